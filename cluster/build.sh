#!/usr/bin/env bash
# Build the local control plane's binaries from the Go module proxy into .tools/cluster/bin/.
#
# Every folder cluster/go/<module>/ is a wrapper Go module: go.mod + go.sum (committed) and a
# build.env that lists BINARIES (NAME=GO_PACKAGE per line) and optional CGO_ENABLED, LDFLAGS,
# TAGS. Adding a binary means dropping in another folder; nothing here needs to change.
#
# A binary is rebuilt only when its build key changes: sha256 of go.mod, go.sum, build.env,
# the package, the flags and `go version`. The key is kept in .tools/cluster/bin/.keys/NAME.
#
# Usage: cluster/build.sh [--list] [--force] [MODULE|BINARY ...]   (default: everything)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=${CLUSTER_BIN:-$root/.tools/cluster/bin}
keys=$out/.keys

force=0
list=0
want=()
for arg in "$@"; do
  case $arg in
    --force) force=1 ;;
    --list) list=1 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "build.sh: unknown option $arg" >&2; exit 2 ;;
    *) want+=("$arg") ;;
  esac
done

if ! command -v go >/dev/null 2>&1; then
  cat >&2 <<'EOF'
build.sh: `go` was not found on PATH.
  The local cluster is built from source with Go >= 1.26 (kwok v0.8.0 declares go 1.26.0).
  Install it, e.g. from https://go.dev/dl/ (tarball into /usr/local/go, then
  export PATH=/usr/local/go/bin:$PATH), and make sure the Go module proxy is reachable
  (GOPROXY, default https://proxy.golang.org). Then re-run: make cluster-build
EOF
  exit 127
fi

go_version=$(go env GOVERSION)
# Wrapper modules live inside this git repository; do not stamp VCS data into the binaries.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"

mkdir -p "$out" "$keys"

selected() {  # selected MODULE BINARY
  [[ ${#want[@]} -eq 0 ]] && return 0
  local w
  for w in "${want[@]}"; do [[ $w == "$1" || $w == "$2" ]] && return 0; done
  return 1
}

fmt_s() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

total_start=$SECONDS
built=0
skipped=0
for moddir in "$here"/go/*/; do
  moddir=${moddir%/}
  mod=$(basename "$moddir")
  [[ -f $moddir/build.env && -f $moddir/go.mod ]] || continue
  BINARIES="" CGO_ENABLED=0 LDFLAGS="" TAGS=""
  # shellcheck disable=SC1091
  source "$moddir/build.env"
  for entry in $BINARIES; do
    name=${entry%%=*}
    pkg=${entry#*=}
    selected "$mod" "$name" || continue
    if [[ $list == 1 ]]; then
      printf '%-12s %-26s %s\n' "$mod" "$name" "$pkg"
      continue
    fi
    key=$( { cat "$moddir/go.mod" "$moddir/go.sum" "$moddir/build.env"
             printf '%s\n' "$name" "$pkg" "$CGO_ENABLED" "$LDFLAGS" "$TAGS" "$go_version" "$(go env GOOS GOARCH)"
           } | sha256sum | cut -d' ' -f1)
    if [[ $force == 0 && -x $out/$name && -f $keys/$name && $(cat "$keys/$name") == "$key" ]]; then
      echo "==> $name: up to date ($out/$name)"
      skipped=$((skipped + 1))
      continue
    fi
    echo "==> $name: $pkg  (module cluster/go/$mod, $go_version, CGO_ENABLED=$CGO_ENABLED)"
    t0=$SECONDS
    # Resolve and download the modules this package needs (timed separately from compiling).
    (cd "$moddir" && go list -mod=readonly -deps ${TAGS:+-tags "$TAGS"} "$pkg" >/dev/null)
    t1=$SECONDS
    echo "    modules resolved/downloaded in $(fmt_s $((t1 - t0)))"
    rm -f "$keys/$name"
    (cd "$moddir" && CGO_ENABLED=$CGO_ENABLED go build -mod=readonly -trimpath \
        ${TAGS:+-tags "$TAGS"} -ldflags "$LDFLAGS" -o "$out/$name.tmp" "$pkg")
    mv -f "$out/$name.tmp" "$out/$name"
    echo "$key" > "$keys/$name"
    t2=$SECONDS
    size=$(du -m "$out/$name" | cut -f1)
    echo "    built $out/$name (${size} MB) in $(fmt_s $((t2 - t1)))  [total for $name: $(fmt_s $((t2 - t0)))]"
    built=$((built + 1))
  done
done
[[ $list == 1 ]] && exit 0
if [[ ${#want[@]} -gt 0 && $((built + skipped)) -eq 0 ]]; then
  echo "build.sh: nothing matches ${want[*]} (see: cluster/build.sh --list)" >&2
  exit 2
fi
echo "==> cluster binaries: $built built, $skipped up to date, in $(fmt_s $((SECONDS - total_start))) -> $out"
