"""The compiled pipeline (a product: users upload it) and full local runs through kfp.local."""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeserve.compiler import compile_components, compile_pipeline, normalize_compiled
from pipeserve.localrun import RunOptions, run_pipeline
from pipeserve.modelcard import verify_files

ROOT = Path(__file__).resolve().parents[1]
COMPILED = ROOT / "pipelines" / "train_and_serve.yaml"
K8S_MANIFEST = ROOT / "manifests" / "pipeline" / "pipeline.yaml"
COMPONENTS = ROOT / "components"
STEPS = ("load_data", "plan_grid", "score_candidate", "select_candidate", "train", "evaluate", "package", "register",
         "gate", "promote", "emit_inference_service", "deploy")
_ARCHIVE = re.compile(r"__KFP_EMBEDDED_ARCHIVE_B64 = '([^']+)'")
# The line every step but load_data starts with (pipeserve.components.*; tests/test_components.py).
LIBRARY_LINE = '__import__("sys").path[:0] = [library.path] if library else []'


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled")
    compile_pipeline(out / "p.yaml", out / "k8s.yaml")
    compile_components(out / "components")
    return out


def _documents(text: str) -> tuple[dict, dict]:
    """The compiled pipeline's two documents: the PipelineSpec and the PlatformSpec (kfp-kubernetes)."""
    spec, platform = yaml.safe_load_all(text)
    return spec, platform


def _executors(text: str) -> dict[str, str]:
    """Executor label (exec-load-data, ...) -> its whole command, as one string."""
    spec, _ = _documents(text)
    return {name: " ".join(e["container"]["command"]) for name, e in spec["deploymentSpec"]["executors"].items()}


def _library(command: str) -> dict[str, bytes]:
    """The files of the library a command embeds: KFP's tar.gz holds pipeserve.tar.xz, which holds them."""
    (raw,) = _ARCHIVE.findall(command)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(base64.b64decode(raw)))) as outer:
        (member,) = [m for m in outer.getmembers() if m.isfile()]
        assert member.name == "pipeserve.tar.xz"
        with tarfile.open(fileobj=io.BytesIO(outer.extractfile(member).read()), mode="r:xz") as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the component pins are the installed versions, older on "
                    "Python 3.10 (numpy 2.2, scikit-learn 1.7): the committed pipeline is compiled on 3.11+")
def test_compiled_pipeline_is_current(fresh):
    """Fails when the pipeline, a component or the embedded library changed without `make compile`."""
    assert normalize_compiled((fresh / "p.yaml").read_text()) == normalize_compiled(COMPILED.read_text()), (
        "pipelines/train_and_serve.yaml is out of date: run `make compile` and commit it")
    assert normalize_compiled((fresh / "k8s.yaml").read_text()) == normalize_compiled(K8S_MANIFEST.read_text()), (
        "manifests/pipeline/pipeline.yaml is out of date: run `make compile` and commit it")
    assert sorted(p.name for p in COMPONENTS.glob("*.yaml")) == sorted(f"{s}.yaml" for s in STEPS)
    for step in STEPS:
        assert normalize_compiled((fresh / "components" / f"{step}.yaml").read_text()) == normalize_compiled(
            (COMPONENTS / f"{step}.yaml").read_text()), f"components/{step}.yaml is out of date: run `make compile`"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the committed pipeline is compiled on 3.11+ (see above)")
def test_a_recompile_is_the_same_pipeline_version(fresh):
    """submit and schedule name the pipeline version after the package: a recompile must not look new."""
    from pipeserve.submission import package_digest

    assert (fresh / "p.yaml").read_bytes() != COMPILED.read_bytes()  # KFP's embedded timestamps differ
    assert package_digest(fresh / "p.yaml") == package_digest(COMPILED)


def test_compiled_pipeline_is_small():
    """The library once (load_data carries it; the other steps get it as an artifact), each step
    written once, executors without their docstrings' Args (the inputs' descriptions hold them).

    530 KB with five steps each carrying the whole library; 115 KB (cap 150 KB); 623 KB with twelve
    steps each carrying its own archive, twice over for the steps KFP copies. Now 210 KB, and
    150 KB is out of reach without dropping a feature or the stock image: the same pipeline with
    no library and no pins (--image) is already 124 KB, of which the DAG's 24 components (If/Else,
    ParallelFor, the nested conditions, each threading the parameters its steps need) are 74 KB,
    the root (33 parameters, described) 14 KB and the twelve programs 21 KB; the library the steps
    import, xz at its strongest and base64-encoded, is 75 KB (42 modules, 247 KB of code without
    docstrings and comments); the pins and KFP's pip preamble 12 KB. test_the_size_is_where_it_is_said_to_be
    keeps each part to its share."""
    assert len(COMPILED.read_bytes()) <= 215_000


def _parts(text: str) -> dict[str, int]:
    """Bytes of the compiled YAML by part: KFP's header comments, its top-level keys, the library
    archive apart from the executors that hold it, and the platform document."""
    spec_text, _, platform_text = text.partition("\n---\n")
    parts: dict[str, int] = {}
    key = "header comments"
    for line in spec_text.splitlines(keepends=True):
        if line[:1].isalpha():
            key = line.split(":")[0]
        parts[key] = parts.get(key, 0) + len(line.encode())
    parts["library archive"] = sum(len(raw) for raw in _ARCHIVE.findall(text))
    parts["deploymentSpec"] -= parts["library archive"]
    parts["platform document"] = len(platform_text.encode()) + len("\n---\n")
    return parts


def test_the_size_is_where_it_is_said_to_be():
    """The budget test_compiled_pipeline_is_small explains, part by part (bytes of the compiled YAML)."""
    text = COMPILED.read_text()
    parts = _parts(text)
    assert sum(parts.values()) == len(text.encode())
    assert parts["library archive"] <= 80_000
    assert parts["components"] <= 76_000 and parts["root"] <= 15_000
    assert parts["deploymentSpec"] <= 46_000  # twelve executors: the programs, the pins, KFP's preamble
    assert parts["header comments"] <= 2_000 and parts["platform document"] <= 1_000


def test_the_pipeline_version_fits_kubectl_apply():
    """`kubectl apply -k manifests/pipeline` (client-side) stores the whole PipelineVersion, as JSON,
    in its last-applied-configuration annotation, and the API server refuses annotations over
    256 KiB in all. Keep 8 KiB for the other annotations."""
    for doc in yaml.safe_load_all(K8S_MANIFEST.read_text()):
        assert len(json.dumps(doc, separators=(",", ":"))) <= 256 * 1024 - 8 * 1024, doc["kind"]


def test_each_step_is_written_once_however_often_the_pipeline_uses_it(fresh):
    """train (plain, and for the best grid candidate), the emit step (three places) and deploy (with
    and without a registry) each have one component and one executor (compiler.share_identical_steps),
    and the platform document (the training steps' node selector and tolerations) names those."""
    spec, platform = _documents((fresh / "p.yaml").read_text())
    assert sorted(spec["deploymentSpec"]["executors"]) == sorted(f"exec-{s.replace('_', '-')}" for s in STEPS)
    uses: dict[str, list[str]] = {}
    for component in [spec["root"], *spec["components"].values()]:
        for task, task_spec in component.get("dag", {}).get("tasks", {}).items():
            uses.setdefault(task_spec["componentRef"]["name"], []).append(task)
    assert sorted(uses["comp-train"]) == ["train", "train-2"]
    assert sorted(uses["comp-emit-inference-service"]) == [
        "emit-inference-service", "emit-inference-service-2", "emit-inference-service-3"]
    assert sorted(uses["comp-deploy"]) == ["deploy", "deploy-2"]
    assert not {"comp-train-2", "comp-emit-inference-service-2", "comp-deploy-2"} & set(spec["components"])
    placed = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert sorted(placed) == ["exec-score-candidate", "exec-train"]


def test_identical_steps_stay_apart_when_their_platform_settings_differ():
    """Two executors with the same container but another node selector are two steps on a cluster."""
    from pipeserve.compiler import share_identical_steps

    container = {"container": {"image": "python:3.11", "command": ["true"]}}
    spec = {"deploymentSpec": {"executors": {"exec-a": dict(container), "exec-a-2": dict(container),
                                             "exec-a-3": dict(container)}},
            "components": {name: {"executorLabel": f"exec-{name[5:]}"} for name in ("comp-a", "comp-a-2", "comp-a-3")},
            "root": {"dag": {"tasks": {t: {"componentRef": {"name": f"comp-{t}"}} for t in ("a", "a-2", "a-3")}}}}
    gpu = {"nodeSelector": {"labels": {"pool": "gpu"}}}
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {"exec-a-2": gpu, "exec-a-3": gpu}}}}}
    share_identical_steps(spec, platform)
    assert sorted(spec["deploymentSpec"]["executors"]) == ["exec-a", "exec-a-2"]
    assert platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"] == {"exec-a-2": gpu}
    assert {t: v["componentRef"]["name"] for t, v in spec["root"]["dag"]["tasks"].items()} == {
        "a": "comp-a", "a-2": "comp-a-2", "a-3": "comp-a-2"}


def _dag(doc: dict, component: str) -> dict:
    return doc["components"][component]["dag"]["tasks"]


def _branches(doc: dict, tasks: dict) -> dict[str, dict]:
    """The If/Else branches of a condition group: condition -> the branch's tasks."""
    (group,) = [t for t in tasks.values() if t["componentRef"]["name"].startswith("comp-condition-branches")]
    branches = _dag(doc, group["componentRef"]["name"])
    return {b["triggerPolicy"]["condition"]: _dag(doc, b["componentRef"]["name"]) for b in branches.values()}


def test_without_a_grid_or_registry_the_dag_runs_the_five_steps_it_always_ran():
    """The fan-out and the registry steps sit behind conditions on their parameters: with their
    defaults (empty) nothing of them is scheduled, and the rest is the old chain."""
    doc, _ = _documents(COMPILED.read_text())
    root = doc["root"]["dag"]["tasks"]
    assert {t for t in root if not t.startswith("condition-branches")} == {"load-data", "evaluate", "package"}
    params = doc["root"]["inputDefinitions"]["parameters"]
    assert params["param_grid_json"]["defaultValue"] == "" and params["registry"]["defaultValue"] == ""
    grid_group, registry_group = (_branches(doc, {k: v}) for k, v in root.items() if k.startswith("condition-br"))
    no_grid = grid_group["inputs.parameter_values['pipelinechannel--param_grid_json'] == ''"]
    assert set(no_grid) == {"train"}
    grid = grid_group["!(inputs.parameter_values['pipelinechannel--param_grid_json'] == '')"]
    assert set(grid) == {"plan-grid", "for-loop-4", "select-candidate", "train-2"}
    assert grid["for-loop-4"]["iteratorPolicy"]["parallelismLimit"] == 4  # bounded fan-out
    assert set(_dag(doc, grid["for-loop-4"]["componentRef"]["name"])) == {"score-candidate"}
    no_registry = registry_group["inputs.parameter_values['pipelinechannel--registry'] == ''"]
    assert {t for t in no_registry if not t.startswith("condition")} == {"emit-inference-service"}
    with_registry = registry_group["!(inputs.parameter_values['pipelinechannel--registry'] == '')"]
    assert {"register", "gate"} <= set(with_registry)
    (promote_group,) = [t for t in with_registry.values() if "triggerPolicy" in t]
    condition = promote_group["triggerPolicy"]["condition"]
    assert condition == "inputs.parameter_values['pipelinechannel--gate-Output'] == 'promote'"
    # Evaluation and packaging take the model from whichever branch trained it.
    model = root["evaluate"]["inputs"]["artifacts"]["model"]
    assert model["taskOutputArtifact"]["producerTask"].startswith("condition-branches")


def test_every_step_gets_the_library_from_load_data():
    """load_data's library output reaches every other task: directly at the top level, through
    its condition groups (as pipelinechannel--load-data-library) below."""
    doc, _ = _documents(COMPILED.read_text())
    assert "library" in doc["components"]["comp-load-data"]["outputDefinitions"]["artifacts"]
    seen = set()
    for name, component in [("root", doc["root"]), *doc["components"].items()]:
        for task, spec in component.get("dag", {}).get("tasks", {}).items():
            if task == "load-data":
                continue
            artifacts = spec["inputs"]["artifacts"]
            library = artifacts.get("library") or artifacts["pipelinechannel--load-data-library"]
            if name == "root":
                assert library == {"taskOutputArtifact": {"outputArtifactKey": "library", "producerTask": "load-data"}}
            else:
                assert library == {"componentInputArtifact": "pipelinechannel--load-data-library"}, (name, task)
            seen.add(task)
    steps = {f"{s.replace('_', '-')}" for s in STEPS} - {"load-data"}
    assert steps | {"train-2", "emit-inference-service-2", "emit-inference-service-3", "deploy-2"} <= seen


def test_only_load_data_embeds_the_library_and_it_holds_what_the_steps_import(fresh):
    """One archive in the whole pipeline: the modules the twelve steps' functions import (and
    nothing no step runs), code only, no caches."""
    from pipeserve.components.embed import library_files
    from pipeserve.components.runtime import _FUNCTIONS, NOT_EMBEDDED

    executors = _executors((fresh / "p.yaml").read_text())
    assert [name for name, command in executors.items() if "__KFP_EMBEDDED_ARCHIVE_B64" in command] == [
        "exec-load-data"]
    files = _library(executors["exec-load-data"])
    assert set(files) == {f"pipeserve/{p.as_posix()}" for p in library_files(*_FUNCTIONS.values(),
                                                                              unused=NOT_EMBEDDED)}
    for module in ("data", "training", "tuning", "packaging", "gate", "deployment", "rollout", "smoke",
                   "kube/builder", "kube/client", "registry/mlflow_registry"):
        assert f"pipeserve/{module}.py" in files, module
    assert not any("__pycache__" in n or "/serving/" in n or "/cli/" in n or "/components/" in n for n in files)
    # Never run in a step: the SDK, make run's local server, the offline schema check (the deploy
    # step applies with server-side strict validation) and its vendored CRD schemas.
    assert not {"pipeserve/sdk.py", "pipeserve/localserver.py", "pipeserve/kube/schema.py"} & set(files)
    assert not any("/schemas/" in n for n in files)
    assert b'"""' not in files["pipeserve/packaging.py"] and b"# " not in files["pipeserve/data.py"]


def test_normalization_still_sees_library_changes(fresh):
    """normalize_compiled digests the files inside the library, not the archive's bytes: a changed
    module changes the digest, the same modules compressed otherwise do not."""
    import lzma

    text = (fresh / "p.yaml").read_text()
    assert "__KFP_EMBEDDED_ARCHIVE_B64 = '<files sha256" in normalize_compiled(text)
    raw = _ARCHIVE.search(_executors(text)["exec-load-data"]).group(1)
    files = _library(_executors(text)["exec-load-data"])
    assert "pipeserve/packaging.py" in files

    def embedded(library: dict[str, bytes], preset: int) -> str:
        inner = io.BytesIO()
        with tarfile.open(fileobj=inner, mode="w:xz", preset=preset) as tar:
            for name, data in library.items():
                member = tarfile.TarInfo(name)
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
        outer = io.BytesIO()
        with tarfile.open(fileobj=outer, mode="w") as tar:
            member = tarfile.TarInfo("pipeserve.tar.xz")
            member.size = len(inner.getvalue())
            tar.addfile(member, io.BytesIO(inner.getvalue()))
        return text.replace(raw, base64.b64encode(gzip.compress(outer.getvalue())).decode(), 1)

    assert normalize_compiled(embedded(files, 1)) == normalize_compiled(text)  # other bytes, same files
    changed = {**files, "pipeserve/packaging.py": files["pipeserve/packaging.py"] + b"\n# changed\n"}
    assert normalize_compiled(embedded(changed, lzma.PRESET_DEFAULT)) != normalize_compiled(text)


def test_compiled_pipeline_parses_and_references_resolve():
    doc, platform_doc = _documents(COMPILED.read_text())
    spec = json_format.ParseDict(doc, pipeline_spec_pb2.PipelineSpec())
    platform = json_format.ParseDict(platform_doc, pipeline_spec_pb2.PlatformSpec())
    assert spec.pipeline_info.name == "train-and-serve"
    tasks = spec.root.dag.tasks
    assert set(tasks) == {"load-data", "condition-branches-1", "evaluate", "package", "condition-branches-5"}
    for name, component in spec.components.items():  # every task's component exists, every executor too
        for task in component.dag.tasks.values() if component.HasField("dag") else []:
            assert task.component_ref.name in spec.components, (name, task.component_ref.name)
        if not component.HasField("dag"):
            assert component.executor_label in doc["deploymentSpec"]["executors"], name
    for executor in platform.platforms["kubernetes"].deployment_spec.executors:
        assert executor in doc["deploymentSpec"]["executors"], executor
    params = spec.root.input_definitions.parameters
    assert params["source"].default_value.string_value == "iris"
    assert params["serving_target"].default_value.string_value == "triton-gpu"
    assert "Built-in dataset" in params["source"].description  # docstrings reach the UI
    estimator = spec.components["comp-train"].input_definitions.parameters["estimator"]
    assert "Catalogue name" in estimator.description  # the steps' Args too, though the executors leave them out


def _installs(command: str) -> list[str]:
    """The arguments of the one `pip install` a step's command runs before the component."""
    (pip,) = re.findall(r"python3 -m pip install --quiet --no-warn-script-location ([^&]+)&&", command)
    return [tok.strip("'") for tok in pip.split()]


def test_components_run_on_a_stock_image_with_pinned_packages():
    doc, _ = _documents(COMPILED.read_text())
    for name, executor in doc["deploymentSpec"]["executors"].items():
        container = executor["container"]
        assert container["image"] == "python:3.11.9-slim-bookworm", name
        command = " ".join(container["command"])
        installs = [tok.strip("'") for tok in command.split() if "==" in tok]
        assert installs and all("==" in tok for tok in installs), name
        program = container["command"][-1]
        assert "Args:" not in program and "Returns:" not in program, name  # the descriptions hold them
        if name != "exec-load-data":
            assert "__KFP_EMBEDDED_ARCHIVE_B64" not in command, name
            body = program.split('"""')[2]  # after the function's (shortened) docstring
            assert body.lstrip("\n").startswith(f"    {LIBRARY_LINE}"), name


def test_each_step_installs_its_whole_dependency_tree_pinned_and_nothing_more(fresh):
    """pip resolves nothing in a pod: every dependency of every pinned package is pinned too, to
    the version the tests run with (kfp aside, installed without its dependencies as KFP itself
    does), and the emit step, which only writes YAML, installs PyYAML alone. (The committed YAML
    is this compile: test_compiled_pipeline_is_current.)"""
    import importlib.metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pod = {"python_version": "3.11", "python_full_version": "3.11.9", "sys_platform": "linux",
           "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    compiled = (fresh / "p.yaml").read_text()
    for name, command in _executors(compiled).items():
        installs = _installs(command)
        assert installs.count("--no-deps") == 1 and command.count("pip install") == 1, name
        pins = dict(tok.split("==") for tok in installs if tok != "--no-deps")
        assert pins.pop("kfp") == importlib.metadata.version("kfp"), name
        have = {canonicalize_name(n): v for n, v in pins.items()}
        assert "kserve" not in have, name
        for dist_name, version in pins.items():
            assert importlib.metadata.version(dist_name) == version, (name, dist_name)  # what the tests ran with
            for line in importlib.metadata.requires(dist_name) or []:
                req = Requirement(line)
                if req.marker is None or req.marker.evaluate(pod):
                    assert canonicalize_name(req.name) in have, f"{name}: {dist_name} needs {req.name}, not pinned"
    assert set(_installs(_executors(compiled)["exec-emit-inference-service"])) == {
        f"PyYAML=={importlib.metadata.version('PyYAML')}", f"kfp=={importlib.metadata.version('kfp')}", "--no-deps"}
    kfp_only = {f"kfp=={importlib.metadata.version('kfp')}", "--no-deps"}
    assert set(_installs(_executors(compiled)["exec-plan-grid"])) == kfp_only  # JSON in, JSON out
    assert set(_installs(_executors(compiled)["exec-select-candidate"])) == kfp_only
    registry = {tok.split("==")[0] for tok in _installs(_executors(compiled)["exec-register"])}
    assert "mlflow-skinny" in registry and not {"SQLAlchemy", "scikit-learn", "kubernetes"} & registry
    gate = {tok.split("==")[0] for tok in _installs(_executors(compiled)["exec-gate"])}
    assert gate - registry == {"kubernetes", "oauthlib", "requests-oauthlib", "websocket-client", "python-dateutil",
                               "six"}
    deploy = {canonicalize_name(tok.split("==")[0]) for tok in _installs(_executors(compiled)["exec-deploy"])}
    assert {"kubernetes", "mlflow-skinny", "tritonclient"} <= deploy and "jsonschema" not in deploy


def test_prebuilt_image_steps_install_nothing(tmp_path):
    from pipeserve.components import ComponentRuntime

    image = "ghcr.io/pipeserve/pipeserve-runtime:0.1.0"
    (path,) = compile_pipeline(tmp_path / "p.yaml", runtime=ComponentRuntime.prebuilt(image))
    text = path.read_text()
    spec, _ = _documents(text)
    for name, executor in spec["deploymentSpec"]["executors"].items():
        assert executor["container"]["image"] == image, name
    assert "pip install" not in text and "__KFP_EMBEDDED_ARCHIVE_B64" not in text
    assert len(text) < 130_000  # twelve steps and their DAG, no library, no pins


def test_kubernetes_manifest_has_pipeline_and_version():
    docs = list(yaml.safe_load_all(K8S_MANIFEST.read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Pipeline", "PipelineVersion"}
    version = kinds["PipelineVersion"]["spec"]
    assert version["pipelineName"] == "train-and-serve"
    assert set(version["platformSpec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]) == {
        "exec-score-candidate", "exec-train"}


def _run(tmp_path, **arguments):
    output = tmp_path / "build"
    arguments.setdefault("storage_uri", (output / "model").as_uri())
    return run_pipeline(RunOptions(output=output, arguments=arguments))


@pytest.mark.slow
def test_local_run_classifier(tmp_path):
    from pipeserve.kube.schema import validate

    result = _run(tmp_path, source="iris", model_name="iris", serving_target="triton-cpu")
    out = tmp_path / "build"
    verify_files(result.model_dir, result.card)
    assert result.model_dir == out / "model" / "iris"
    assert set(result.step_seconds) == {"load-data", "train", "evaluate", "package", "emit-inference-service"}
    isvc = yaml.safe_load(result.manifest.read_text())
    assert validate(isvc) == []
    model = isvc["spec"]["predictor"]["model"]
    assert model["storageUri"] == (out / "model").as_uri() and model["modelFormat"]["name"] == "onnx"
    assert json.loads((out / "metrics.json").read_text())["accuracy"] > 0.9
    assert (out / "model-card.md").read_text().startswith("# Model card: iris")
    run_id = result.card.lineage["pipeline_run_id"]  # the run id placeholder was filled in
    assert run_id and isvc["metadata"]["annotations"]["pipeserve.dev/pipeline-run-id"] == run_id


@pytest.mark.slow
def test_local_run_regressor_gpu_target(tmp_path):
    from pipeserve.kube.schema import validate

    result = _run(tmp_path, source="diabetes", model_name="diabetes", estimator="hist_gradient_boosting",
                  params_json='{"max_iter": 20}')
    assert result.card.task == "regression" and result.card.estimator["params"]["max_iter"] == 20
    assert set(result.metrics) == {"rmse", "mae", "r2"}
    isvc = yaml.safe_load(result.manifest.read_text())
    assert validate(isvc) == []
    resources = isvc["spec"]["predictor"]["model"]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] in (1, "1")


@pytest.mark.slow
def test_failed_step_reports_its_error(tmp_path):
    from pipeserve.localrun import PipelineFailed

    csv = tmp_path / "t.csv"
    csv.write_text("a,y\n1,0\n2,1\n3,0\n4,1\n")
    with pytest.raises(PipelineFailed, match=r"step 'load-data' failed: Target column 'nope' not found") as info:
        _run(tmp_path, source=str(csv), target="nope", model_name="x")
    assert info.value.exit_code == 2  # a DataError inside the step keeps its exit code


@pytest.mark.slow
def test_a_refused_deployment_in_the_emit_step_exits_2(tmp_path):
    """DeploymentConfigError (kube, a ConfigError subclass defined outside pipeserve.errors) keeps exit code 2."""
    from pipeserve.localrun import PipelineFailed

    with pytest.raises(PipelineFailed, match=r"^step 'emit-inference-service' failed: .*max_replicas") as info:
        _run(tmp_path, source="iris", model_name="iris", serving_target="triton-cpu", min_replicas=5, max_replicas=2)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)
    # The step ran pipeserve from load_data's library artifact (here a copy of the installed package).
    traceback = (tmp_path / "build" / "logs" / "pipeline.log").read_text()
    assert re.search(r'File "[^"]*/load-data/library/pipeserve/kube/spec\.py"', traceback), traceback[-2000:]


@pytest.mark.parametrize(("last_line", "code"), [
    ("pipeserve.kube.kserve.DeploymentConfigError: min_replicas (5) is greater than max_replicas (2).", 2),
    ("pipeserve.errors.DataError: Target column 'nope' not found", 2),
    ("pipeserve.errors.NotFound: no model 'x'", 2),
    ("pipeserve.errors.ParityError: ONNX and scikit-learn disagree", 1),
    ("ValueError: something else", 1),
    ("sklearn.utils._param_validation.InvalidParameterError: bad C", 1),
])
def test_a_failed_step_exits_with_its_error_class_code(tmp_path, last_line, code):
    from pipeserve.localrun import _failure_message

    log = tmp_path / "pipeline.log"
    log.write_text("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n    f()\n"
                   f"{last_line}\n\n12:00:00.000 - ERROR - Task 'emit-inference-service' finished with status "
                   "FAILURE\n")
    message, got = _failure_message(log, "emit-inference-service")
    assert got == code
    assert message.startswith(f"step 'emit-inference-service' failed: {last_line.split(': ', 1)[1]} (full log: ")


def _iris_csv(path: Path, poison_test_rows: bool) -> Path:
    """iris as a CSV; with ``poison_test_rows`` the rows the pipeline holds out get absurd features
    (the split depends on the labels and the seed only, so the same rows are held out)."""
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    frame = load_iris(as_frame=True).frame.rename(columns={"target": "species"})
    if poison_test_rows:
        _, test_rows = train_test_split(np.arange(len(frame)), test_size=0.2, random_state=42,
                                        stratify=frame["species"])
        features = [c for c in frame.columns if c != "species"]
        frame.loc[test_rows, features] = -100.0 * frame.loc[test_rows, features].to_numpy()
    frame.to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_the_grid_is_searched_by_cross_validation_on_the_training_split_only(tmp_path):
    """The same grid on iris and on iris with every held-out row poisoned: the candidates' scores
    and the choice are identical (the search never sees the test rows), while the evaluation on
    those rows collapses. The choice is the one cross-validation on the training rows makes."""
    from pipeserve import data, tuning

    grid = '{"C": [0.001, 0.1, 10], "max_iter": [100]}'
    runs = {}
    for poisoned in (False, True):
        csv = _iris_csv(tmp_path / f"iris-{poisoned}.csv", poisoned)
        runs[poisoned] = run_pipeline(RunOptions(output=tmp_path / f"build-{poisoned}", arguments=dict(
            source=str(csv), target="species", model_name="iris", param_grid_json=grid, cv_folds=3,
            storage_uri="s3://m/iris/", serving_target="triton-cpu")))
    clean, poisoned = runs[False], runs[True]
    assert clean.search is not None and poisoned.search is not None
    assert [s.index for s in clean.search.scores] == [0, 1, 2]
    assert clean.search.scores == poisoned.search.scores  # bit for bit
    assert clean.search.chosen == poisoned.search.chosen == {"C": 10, "max_iter": 100}
    assert clean.card.estimator["params"]["C"] == 10
    assert clean.metrics["accuracy"] > 0.9 and poisoned.metrics["accuracy"] < 0.6  # the test rows were poisoned
    assert clean.step_counts["score-candidate"] == 3 and "train-2" in clean.step_seconds
    report = clean.search.report.read_text()
    assert "`C=10 max_iter=100` **(chosen)**" in report and "training split" in report

    ds = data.load_dataset(str(tmp_path / "iris-False.csv"), target="species")
    split = data.split_dataset(ds, test_size=0.2, random_state=42)
    expected = [tuning.cross_validate("classification", "logistic_regression", {"C": c, "max_iter": 100},
                                      split.X_train, split.y_train, folds=3, random_state=42, index=i)
                for i, c in enumerate([0.001, 0.1, 10])]
    assert clean.search.scores == expected


def test_step_times_survive_finish_lines_kfp_local_drops():
    """Three parallel candidates, one finish line lost (kfp.local resets the root logger when an
    iteration ends): still three runs, ending where the next step starts."""
    from pipeserve.localrun import _step_times

    events = [(0.0, "load-data", "start"), (1.0, "load-data", "end"), (1.0, "score-candidate", "start"),
              (1.1, "score-candidate", "start"), (3.0, "score-candidate", "end"), (3.0, "score-candidate", "start"),
              (3.5, "score-candidate", "end"), (5.0, "select-candidate", "start"), (5.2, "select-candidate", "end")]
    seconds, counts = _step_times(events, finish=6.0)
    assert counts == {"load-data": 1, "score-candidate": 3, "select-candidate": 1}
    assert seconds["score-candidate"] == pytest.approx(4.0) and seconds["load-data"] == pytest.approx(1.0)


@pytest.mark.slow
def test_a_parallel_run_leaves_print_and_logging_as_it_found_them(tmp_path):
    """kfp.local's parallel iterations swap builtins.print and the root logger's handlers in
    threads; after the run both are what they were (in-process callers: the SDK, run_cli)."""
    import builtins
    import logging

    printer, handlers, level = builtins.print, logging.getLogger().handlers[:], logging.getLogger().level
    run_pipeline(RunOptions(output=tmp_path / "build", arguments=dict(
        source="iris", model_name="iris", param_grid_json='{"C": [0.1, 1, 10]}', cv_folds=2,
        storage_uri="s3://m/iris/", serving_target="triton-cpu")))
    assert builtins.print is printer
    assert logging.getLogger().handlers == handlers and logging.getLogger().level == level


def test_training_steps_are_sized_and_placed_from_the_run_parameters():
    # SageMaker's instance_type, KFP-style: the training and grid-scoring executors' resources and
    # node pool come from the train_* pipeline parameters (a submitted run's Workflow carries them).
    import yaml

    spec, platform = list(yaml.safe_load_all((ROOT / "pipelines" / "train_and_serve.yaml").read_text()))
    executors = spec["deploymentSpec"]["executors"]
    for name in ("exec-train", "exec-score-candidate"):
        resources = executors[name]["container"]["resources"]
        for field, parameter in (("resourceCpuRequest", "train_cpu_request"), ("resourceCpuLimit", "train_cpu_limit"),
                                 ("resourceMemoryRequest", "train_memory_request"),
                                 ("resourceMemoryLimit", "train_memory_limit")):
            assert resources[field] == f"{{{{$.inputs.parameters['pipelinechannel--{parameter}']}}}}"
        placed = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][name]
        assert placed["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"] == \
            "pipelinechannel--train_node_selector"
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    sizes = (defaults["train_cpu_request"]["defaultValue"], defaults["train_memory_limit"]["defaultValue"])
    assert sizes == ("1", "4Gi")
    assert "resources" not in executors["exec-package"]["container"]  # only the training steps are sized
