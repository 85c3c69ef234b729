"""Render helpers shared by the tests and scripts/lint-k8s.sh: real helm and kubectl, loud failures."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "pipeserve"
MANIFESTS = ROOT / "manifests"
# Each chart scenario matches the Kustomize overlay of the same name, one to one.
SCENARIOS = ("cpu", "gpu", "knative-canary")
RELEASE = "iris"
# Labels only one of the two tools writes (kubeflow/manifests' parity test strips the same).
TOOL_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


def run(argv: list[str]) -> str:
    """Run a tool; on failure raise with its stderr (never return partial output)."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed (rc {proc.returncode}):\n{proc.stderr.strip()}")
    return proc.stdout


def parse(text: str, source: str) -> list[dict[str, Any]]:
    """Parse a multi-document YAML stream; every document must be a mapping with a kind."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise AssertionError(f"{source} is not valid YAML: {exc}") from exc
    bad = [d for d in docs if not isinstance(d, dict) or "kind" not in d]
    if bad or not docs:
        raise AssertionError(f"{source} rendered {len(docs)} documents, {len(bad)} without a kind")
    return docs


def helm_template(helm: str, scenario: str | None = None, *extra: str, namespace: str = "ml") -> list[dict[str, Any]]:
    argv = [helm, "template", RELEASE, str(CHART), "--namespace", namespace]
    if scenario:
        argv += ["-f", str(CHART / "ci" / f"{scenario}-values.yaml")]
    argv += list(extra)
    return parse(run(argv), f"helm template ({scenario or 'defaults'})")


def kustomize(kubectl: str, path: str) -> list[dict[str, Any]]:
    return parse(run([kubectl, "kustomize", str(MANIFESTS / path)]), f"kubectl kustomize {path}")


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    if len(found) != 1:
        raise AssertionError(f"expected exactly one {kind}, got {len(found)}: {[d['kind'] for d in docs]}")
    return found[0]


def strip_tool_labels(doc: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    labels = out.get("metadata", {}).get("labels", {})
    for key in TOOL_LABELS:
        labels.pop(key, None)
    return out
