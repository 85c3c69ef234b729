"""checkov on the rendered output: 0 failed checks (each skip is justified in place, in the manifest)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .render import CHART, ROOT, SCENARIOS, run

# checkov lives in its own venv (make test and make lint-k8s create it) and takes seconds a scan.
pytestmark = pytest.mark.slow

CHECKOV = ROOT / ".tools" / "checkov-venv" / "bin" / "checkov"


@pytest.fixture(scope="module")
def checkov() -> Path:
    if not CHECKOV.is_file():
        pytest.skip(
            f"{CHECKOV.relative_to(ROOT)} is missing: `make lint-k8s` creates it (checkov==3.3.30 in its own venv)"
        )
    return CHECKOV


def _scan(checkov: Path, directory: Path) -> tuple[int, int, int, str]:
    proc = subprocess.run(
        [str(checkov), "--compact", "--quiet", "--skip-download", "--framework", "kubernetes", "-d", str(directory)],
        capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    match = re.search(r"Passed checks: (\d+), Failed checks: (\d+), Skipped checks: (\d+)", out)
    assert match, f"checkov printed no summary (rc {proc.returncode}):\n{out[-2000:]}"
    passed, failed, skipped = map(int, match.groups())
    return passed, failed, skipped, out


def test_rendered_chart_and_overlays_pass_checkov(checkov, helm, kubectl, tmp_path):
    for scenario in SCENARIOS:
        values = CHART / "ci" / f"{scenario}-values.yaml"
        (tmp_path / f"helm-{scenario}.yaml").write_text(run([helm, "template", "iris", str(CHART), "-f", str(values)]))
        (tmp_path / f"kustomize-{scenario}.yaml").write_text(
            run([kubectl, "kustomize", str(ROOT / "manifests" / "overlays" / scenario)])
        )
    (tmp_path / "rbac.yaml").write_text(run([kubectl, "kustomize", str(ROOT / "manifests" / "rbac")]))
    passed, failed, skipped, out = _scan(checkov, tmp_path)
    assert failed == 0, out
    assert passed > 50  # it really scanned the pods/RBAC, not an empty set
    # Every skip carries its reason in the manifest itself.
    rendered = "".join(p.read_text() for p in tmp_path.glob("*.yaml"))
    assert skipped > 0 and all(re.match(r"CKV2?_K8S_\d+=\S.{10,}", s)
                               for s in re.findall(r"checkov\.io/skip\d+: (.*)", rendered))


def test_checkov_does_fail_on_an_unhardened_pod(checkov, tmp_path):
    (tmp_path / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: loose\n  namespace: ml\n"
        "spec:\n  containers:\n    - name: c\n      image: busybox\n"
    )
    _, failed, _, out = _scan(checkov, tmp_path)
    assert failed > 5, out
    assert "CKV_K8S_20" in out  # allowPrivilegeEscalation
