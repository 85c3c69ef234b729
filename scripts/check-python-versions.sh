#!/usr/bin/env bash
# Install pipeserve and run the fast tests on every supported Python found on this machine.
#
# For each of Python 3.10-3.13 (override with PYTHONS="3.10 3.13"): build a venv, install
# `-c constraints.txt -e ".[test]"` exactly as `make` does, `pip check`, then run the fast tests
# (`-m "not slow"`). Pins differ only on 3.10 (environment markers in pyproject.toml and
# constraints.txt); 3.11-3.13 resolve to the same versions.
#
# Usage (from the repository root, or via `make check-pythons`):
#   scripts/check-python-versions.sh                         # every interpreter found
#   PYTHONS="3.10" scripts/check-python-versions.sh          # just one
#   scripts/check-python-versions.sh tests/test_training.py  # pytest arguments replace "tests"
#
# Environment:
#   PYTHONS       versions to try (default "3.10 3.11 3.12 3.13")
#   VENV_ROOT     where the venvs live (default .tools/pythons: git-ignored, kept by `make clean`);
#                 each is reused while pyproject.toml and constraints.txt are unchanged
#   PYTEST_MARK   marker expression (default "not slow")
#   REQUIRE_ALL=1 a missing interpreter fails the run instead of being skipped
#   TOOLS_BIN     kubectl/helm from `make tools` (default .tools/bin); CHECKOV_VENV is passed through
#
# Versions run one after the other (installs and tests are CPU-heavy). Exit status: 0 when every
# version found installed and passed, 1 otherwise. A summary table is printed at the end and written
# to $VENV_ROOT/summary.txt; each version's full log is $VENV_ROOT/<version>.log.
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHONS=${PYTHONS:-"3.10 3.11 3.12 3.13"}
VENV_ROOT=${VENV_ROOT:-.tools/pythons}
PYTEST_MARK=${PYTEST_MARK:-"not slow"}
REQUIRE_ALL=${REQUIRE_ALL:-0}
if [ $# -gt 0 ]; then PYTEST_TARGETS=("$@"); else PYTEST_TARGETS=(tests); fi

mkdir -p "$VENV_ROOT"
VENV_ROOT=$(cd "$VENV_ROOT" && pwd)
# The installed tree depends on these two files only; a changed hash means a fresh venv.
INPUTS_HASH=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
# Tests that call kubectl/helm find the pinned binaries from `make tools` (as `make test` does).
TOOLS_BIN=${TOOLS_BIN:-$ROOT/.tools/bin}
[ -d "$TOOLS_BIN" ] && export PATH="$TOOLS_BIN:$PATH"

find_python() {  # $1 = "3.10" -> path of an interpreter reporting exactly that version, or nothing
    local v=$1 candidate
    local candidates=("python$v")
    # pyenv installs are often not on PATH (its shims refuse versions that are not selected).
    for dir in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin; do
        [ -x "$dir/python$v" ] && candidates+=("$dir/python$v")
    done
    for candidate in "${candidates[@]}"; do
        if "$candidate" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$v'.split('.'))))" \
            >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

declare -a SUMMARY
status=0
for v in $PYTHONS; do
    log="$VENV_ROOT/$v.log"
    venv="$VENV_ROOT/py$v"
    if ! py=$(find_python "$v"); then
        SUMMARY+=("$(printf '%-5s %-9s %s' "$v" "missing" "no python$v on PATH or in pyenv")")
        [ "$REQUIRE_ALL" = 1 ] && status=1
        continue
    fi
    echo "=== Python $v ($py) -> $venv; log: $log"
    : >"$log"
    # Reinstall when the pins changed or the tree moved (the editable install records its path).
    if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$INPUTS_HASH $ROOT" ]; then
        rm -rf "$venv"
        echo "--- installing" | tee -a "$log"
        if ! { "$py" -m venv "$venv" &&
               "$venv/bin/python" -m pip install --quiet -c constraints.txt -e ".[test]"; } >>"$log" 2>&1; then
            tail -n 20 "$log"
            SUMMARY+=("$(printf '%-5s %-9s %s' "$v" "FAIL" "install failed (see $log)")")
            status=1
            continue
        fi
        echo "$INPUTS_HASH $ROOT" >"$venv/.installed"
    fi
    if ! "$venv/bin/python" -m pip check >>"$log" 2>&1; then
        tail -n 20 "$log"
        SUMMARY+=("$(printf '%-5s %-9s %s' "$v" "FAIL" "pip check: broken requirements (see $log)")")
        status=1
        continue
    fi
    echo "--- pytest ${PYTEST_TARGETS[*]} -m \"$PYTEST_MARK\"" | tee -a "$log"
    "$venv/bin/python" -m pytest "${PYTEST_TARGETS[@]}" -m "$PYTEST_MARK" -q -p no:cacheprovider 2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
    result=$(grep -E '^(=+ )?([0-9]+ (passed|failed|errors?|skipped|deselected|xfailed|xpassed)|no tests ran).* in [0-9.]+s' "$log" |
        tail -n 1 | tr -d '=' | sed 's/^ *//; s/ *$//')
    if [ "$rc" = 0 ]; then
        SUMMARY+=("$(printf '%-5s %-9s %s' "$v" "ok" "$result")")
    else
        SUMMARY+=("$(printf '%-5s %-9s %s' "$v" "FAIL" "${result:-pytest exit $rc} (see $log)")")
        status=1
    fi
done

{
    echo
    echo "Python versions (pins: $INPUTS_HASH)"
    printf '%s\n' "${SUMMARY[@]}"
} | tee "$VENV_ROOT/summary.txt"
exit $status
