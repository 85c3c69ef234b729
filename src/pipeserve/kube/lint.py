"""``python -m pipeserve.kube.lint FILE...``: strictly validate every document of rendered YAML files.

Used by ``scripts/lint-k8s.sh`` on the output of ``helm template`` and ``kubectl kustomize``.
Prints one line per document; exits 1 if any document fails (see :mod:`pipeserve.kube.schema`).
"""

from __future__ import annotations

import sys
from pathlib import Path


def lint_files(paths: list[Path]) -> tuple[int, list[str]]:
    """Validate every document in ``paths``; return (documents checked, problems)."""
    import yaml

    from pipeserve.kube.schema import describe, validate

    count, problems = 0, []
    for path in paths:
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except (OSError, yaml.YAMLError) as exc:
            problems.append(f"{path}: cannot read YAML: {exc}")
            continue
        if not docs:
            problems.append(f"{path}: no documents")
        for doc in docs:
            count += 1
            problems += [f"{path}: {describe(doc)}: {e}" for e in validate(doc)]
    return count, problems


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m pipeserve.kube.lint FILE...", file=sys.stderr)
        return 2
    count, problems = lint_files([Path(a) for a in argv])
    for problem in problems:
        print(f"FAIL {problem}")
    print(f"strict schema check: {count} documents, {len(problems)} problems")
    return 1 if problems or count == 0 else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
