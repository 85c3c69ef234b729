"""`pipeserve models promote/rollback --namespace` on the local control plane: rollout, rollback, canary.

The registry is a real `mlflow server` (tests/registry's fixture) whose proxied artifacts stand for
the bucket ``s3://bucket/mlartifacts``, so ``storage_uri`` gives the s3:// URIs KServe would fetch.
Pods are simulated (kwok): a pod that gets scheduled is Ready at once, so "never Ready" here means
"never scheduled" (no GPU left, or a node selector no node matches). No Knative controller runs: for
Knative mode, :class:`KnativeStandIn` writes the Knative Service's status as Knative Serving's
controller would (a revision per template change, the traffic block resolved, Ready), only in the
test's namespace, like kwok does for pods. What is asserted is what the real KServe 0.20 controller
writes in response (the Knative Service's traffic split, its rolled-out revision tracking).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clusterkit import ISVC, free_gpus, gpus_taken, own_namespace, wait_for
from helpers import run_cli
from registry.conftest import MlflowServer, good_fit, mlflow_server, renamed, weak_fit  # noqa: F401

from pipeserve.kube.client import Cluster
from pipeserve.registry import CHAMPION, RegistrySettings
from pipeserve.registry.mlflow_registry import MlflowRegistry
from pipeserve.registry.rollouts import rollouts

pytestmark = pytest.mark.cluster

ARTIFACTS = "s3://bucket/mlartifacts"
KSVC = ("serving.knative.dev/v1", "Service")
SOURCE_URI = "internal.serving.kserve.io/storage-initializer-sourceuri"
TIMINGS: dict[str, list[float]] = {}


@pytest.fixture(scope="module", autouse=True)
def _report_timings() -> Iterator[None]:
    """After the module's tests, print what the rollouts measured (pytest -s shows it)."""
    yield
    for what, values in TIMINGS.items():
        print(f"\n{what}: {', '.join(f'{v:.2f} s' for v in values)}")


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def admin(local_cluster: Path, monkeypatch_module: pytest.MonkeyPatch) -> Cluster:
    monkeypatch_module.setenv("KUBECONFIG", str(local_cluster))
    monkeypatch_module.setenv("PIPESERVE_ACTOR", "rollout-test")
    return Cluster().connect()


@pytest.fixture
def ns(admin: Cluster) -> Iterator[str]:
    """A namespace of the test's own; its InferenceServices and pods are gone afterwards (frees the GPUs)."""
    with own_namespace(admin, "ro") as name:
        yield name


@pytest.fixture(scope="module")
def registry(mlflow_server: MlflowServer) -> MlflowRegistry:  # noqa: F811
    return MlflowRegistry(RegistrySettings.resolve(mlflow_server.url, artifacts_destination=ARTIFACTS,
                                                   environ={"PIPESERVE_ACTOR": "rollout-test"}))


@pytest.fixture
def model(request: pytest.FixtureRequest, registry: MlflowRegistry, weak_fit, good_fit,  # noqa: F811
          tmp_path: Path) -> str:
    """A model of the test's own in the shared server: version 1 (C=0.001) and version 2 (the default C)."""
    name = f"m{abs(hash(request.node.name)) % 10**7}-{int(time.time()) % 10**4}"
    registry.register(renamed(weak_fit, name, tmp_path / "v1"))
    registry.register(renamed(good_fit, name, tmp_path / "v2"))
    return name


def models(verb: str, registry: MlflowRegistry, *argv: str):  # type: ignore[no-untyped-def]
    return run_cli("models", verb, *argv, "--registry", registry.settings.uri, "--artifacts-destination", ARTIFACTS)


def _ready(obj: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (obj.get("status") or {}).get("conditions", []))


def _one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    errors = [line for line in result.err.splitlines() if ": error: " in line]
    assert errors == [result.err.splitlines()[-1]], result.err  # progress lines, then one line saying why
    return errors[0]


def _seconds(out: str, pattern: str = "Ready ") -> float:
    import re

    return float(re.search(re.escape(pattern) + r"([0-9.]+) s", out)[1])  # type: ignore[index]


def _served(admin: Cluster, ns: str, name: str) -> tuple[str, str, dict[str, Any]]:
    """(the ISVC's model version, the storage URI on the controller's Deployment template, the Deployment)."""
    isvc = admin.get(*ISVC, name, ns)
    deployment = admin.get("apps/v1", "Deployment", f"{name}-predictor", ns)
    return (isvc["metadata"]["annotations"]["pipeserve.dev/model-version"],
            deployment["spec"]["template"]["metadata"]["annotations"][SOURCE_URI], deployment)


def _running_pods(admin: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    pods = admin.list("v1", "Pod", ns, label_selector=f"serving.kserve.io/inferenceservice={name}")
    return [p for p in pods if (p.get("status") or {}).get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")]


# ---- Standard mode -------------------------------------------------------------------------------


def test_version_2_replaces_1_and_rollback_puts_1_back(admin: Cluster, ns: str, model: str,
                                                       registry: MlflowRegistry) -> None:
    uri1, uri2 = registry.storage_uri(f"{model}/1"), registry.storage_uri(f"{model}/2")
    assert uri1.startswith(ARTIFACTS + "/") and uri1 != uri2

    first = models("promote", registry, model, "1", "--namespace", ns, "--target", "triton-cpu", "--no-smoke",
                   "--timeout", "60")
    assert first.code == 0, first.err
    assert first.out.startswith(f"{model}@champion: unset → 1 (promote, #")
    assert f"{ns}/{model} serves {model}/1 (Standard mode): rolled out and Ready " in first.out
    version, source, deployment = _served(admin, ns, model)
    assert (version, source) == ("1", uri1) and _ready(admin.get(*ISVC, model, ns))
    first_sets = {rs["metadata"]["name"] for rs in admin.list("apps/v1", "ReplicaSet", ns)}

    second = models("promote", registry, model, "2", "--namespace", ns, "--no-smoke", "--timeout", "60")
    assert second.code == 0, second.err
    assert second.out.splitlines()[0].startswith(f"{model}@champion: 1 → 2 (promote, #")
    TIMINGS.setdefault("promote: apply → rolled out and Ready", []).append(_seconds(second.out))
    # Returned only once rolled out: the controller's Deployment runs version 2, from a new ReplicaSet.
    version, source, deployment = _served(admin, ns, model)
    assert (version, source) == ("2", uri2)
    assert deployment["status"]["updatedReplicas"] == deployment["status"]["replicas"] == 1
    sets = admin.list("apps/v1", "ReplicaSet", ns)
    new = [rs for rs in sets if rs["metadata"]["name"] not in first_sets]
    assert len(new) == 1 and new[0]["spec"]["template"]["metadata"]["annotations"][SOURCE_URI] == uri2
    (pod,) = _running_pods(admin, ns, model)
    assert pod["metadata"]["name"].startswith(new[0]["metadata"]["name"])
    init = {c["name"]: c for c in pod["spec"]["initContainers"]}
    assert init["storage-initializer"]["args"][:2] == [uri2, "/mnt/models"]
    isvc = admin.get(*ISVC, model, ns)
    assert _ready(isvc) and isvc["spec"]["predictor"]["model"]["runtime"] == "kserve-tritonserver"
    # The serving setup was read back: still triton-cpu (no GPU), as version 1 was served.
    assert "nvidia.com/gpu" not in isvc["spec"]["predictor"]["model"]["resources"]["limits"]
    assert registry.aliases(model)[CHAMPION] == "2"
    [record] = rollouts(registry, model, "2")
    assert (record.action, record.outcome, record.namespace, record.inference_service, record.traffic_percent,
            record.other_version, record.actor, record.mode) == (
        "promote", "serving", ns, model, 100, "1", "rollout-test", "Standard")
    assert record.cluster == admin.server and record.seconds is not None
    assert [r.outcome for r in rollouts(registry, model, "1")] == ["serving", "replaced"]
    tags = registry.get(f"{model}/2").tags
    assert tags["pipeserve.rollout.outcome"] == "serving"
    assert tags["pipeserve.rollout.where"].startswith(f"{ns}/{model} on ")

    back = models("rollback", registry, model, "--namespace", ns, "--no-smoke", "--timeout", "60")
    assert back.code == 0, back.err
    assert back.out.splitlines()[0].startswith(f"{model}@champion: 2 → 1 (rollback, #")
    TIMINGS.setdefault("rollback: apply → rolled out and Ready", []).append(_seconds(back.out))
    version, source, deployment = _served(admin, ns, model)
    assert (version, source) == ("1", uri1) and _ready(admin.get(*ISVC, model, ns))
    # Version 1's pod template again: the Deployment controller scales version 1's ReplicaSet back up.
    (pod,) = _running_pods(admin, ns, model)
    assert any(pod["metadata"]["name"].startswith(n) for n in first_sets)
    assert registry.aliases(model)[CHAMPION] == "1"
    assert [r.outcome for r in rollouts(registry, model, "2")] == ["serving", "replaced"]

    again = models("rollback", registry, model, "--namespace", ns, "--no-smoke")
    assert again.code == 2 and "has no earlier champion" in _one_error_line(again)


def test_a_rollout_without_gpu_capacity_rolls_back_by_itself_and_leaves_the_alias(admin: Cluster, ns: str, model: str,
                                                                                 registry: MlflowRegistry) -> None:
    # Version 1 on the GPU target takes one of gpu-node-0's two GPUs (other sessions may hold some: wait).
    wait_for(lambda: free_gpus(admin) >= 1, "a free GPU on gpu-node-0", 120)
    first = models("promote", registry, model, "1", "--namespace", ns, "--no-smoke", "--timeout", "60")
    assert first.code == 0, first.err
    _, _, before = _served(admin, ns, model)
    with gpus_taken(admin, ns):
        started = time.monotonic()
        result = models("promote", registry, model, "2", "--namespace", ns, "--no-smoke", "--timeout", "10")
        took = time.monotonic() - started
    assert result.code == 1 and result.out == ""
    line = _one_error_line(result)
    assert line.startswith(f"pipeserve models promote: error: rollout of {model}/2 to {ns}/{model} failed: ")
    print(f"\n{line}")
    assert "not Ready after 10s" in line and "Insufficient nvidia.com/gpu" in line
    assert f"rolled {ns}/{model} back to version 1 (Ready " in line and line.endswith(f"{model}@champion stays 1.")
    TIMINGS.setdefault("automatic rollback: re-apply → rolled out and Ready", []).append(
        _seconds(line, "Ready "))
    assert took < 10 + 30
    # Back as it was: the alias, the ISVC's version, the Deployment's template, one running pod of version 1.
    assert registry.aliases(model)[CHAMPION] == "1"
    version, source, deployment = _served(admin, ns, model)
    assert (version, source) == ("1", registry.storage_uri(f"{model}/1"))
    assert deployment["spec"]["template"] == before["spec"]["template"]
    assert _ready(admin.get(*ISVC, model, ns))
    wait_for(lambda: len(_running_pods(admin, ns, model)) == 1 and all(
        p["metadata"]["annotations"]["pipeserve.dev/model-version"] == "1" for p in _running_pods(admin, ns, model)),
        "only version 1's pod running")
    [failed] = rollouts(registry, model, "2")
    assert failed.outcome == "failed" and "Insufficient nvidia.com/gpu" in failed.reason


def test_a_first_rollout_that_never_gets_ready_is_removed_again(admin: Cluster, ns: str, model: str,
                                                                registry: MlflowRegistry) -> None:
    result = models("promote", registry, model, "1", "--namespace", ns, "--target", "triton-cpu", "--no-smoke",
                    "--node-selector", "pool=nowhere", "--timeout", "3")
    assert result.code == 1
    line = _one_error_line(result)
    assert "didn't match Pod's node affinity/selector" in line
    assert f"removed InferenceService {ns}/{model} again (nothing was served before)" in line
    assert line.endswith(f"{model}@champion stays unset.")
    assert admin.get(*ISVC, model, ns) is None and CHAMPION not in registry.aliases(model)


def test_standard_mode_refuses_a_canary_in_one_line_and_changes_nothing(admin: Cluster, ns: str, model: str,
                                                                        registry: MlflowRegistry) -> None:
    assert models("promote", registry, model, "1", "--namespace", ns, "--target", "triton-cpu", "--no-smoke").code == 0
    generation = admin.get(*ISVC, model, ns)["metadata"]["generation"]
    result = models("promote", registry, model, "2", "--namespace", ns, "--canary", "10", "--no-smoke")
    assert result.code == 2 and result.out == "" and result.err.count("\n") == 1
    assert result.err.startswith(f"pipeserve models promote: error: --canary needs Knative mode, and InferenceService "
                                 f"{ns}/{model} is in Standard mode: ")
    assert "spec.canary (0.20)" in result.err and "promote without --canary" in result.err
    assert admin.get(*ISVC, model, ns)["metadata"]["generation"] == generation
    assert registry.aliases(model)[CHAMPION] == "1" and rollouts(registry, model, "2") == []


def test_what_kserve_020_does_with_spec_canary_in_standard_mode(admin: Cluster, ns: str) -> None:
    """Why --canary is refused in Standard mode: 0.20 runs the canary beside the stable but routes it nothing."""
    from kube.conftest import make_card

    from pipeserve.kube import DeploymentSpec, build_inference_service

    isvc = build_inference_service(make_card(), "s3://models/iris/", DeploymentSpec(target="triton-cpu", namespace=ns))
    admin.apply_objects([isvc])
    canary = {**isvc, "spec": {**isvc["spec"], "canary": [{"trafficPercent": 10, "predictor": {
        "name": "v2", "model": {**isvc["spec"]["predictor"]["model"], "storageUri": "s3://models/iris-v2/"}}}]}}
    admin.apply_objects([canary], force_conflicts=True)
    stored = wait_for(lambda: (o := admin.get(*ISVC, "iris", ns)) and (o.get("status") or {}).get("canaryStatuses")
                    and o, "the canary status")
    assert stored["status"]["canaryStatuses"][0]["trafficPercent"] == 10
    assert wait_for(lambda: admin.get("apps/v1", "Deployment", "iris-v2-predictor", ns), "the canary Deployment")
    assert admin.get("v1", "Service", "iris-v2-predictor", ns)["spec"]["selector"] == {"app": "isvc.iris-v2-predictor"}
    ingress = wait_for(lambda: admin.get("networking.k8s.io/v1", "Ingress", "iris", ns), "the Ingress")
    backends = {p["backend"]["service"]["name"] for rule in ingress["spec"]["rules"]
                for p in rule["http"]["paths"]}
    assert backends == {"iris-predictor"}  # no weight, no route: the canary's 10 % go nowhere


def test_cli_errors_are_one_line_with_exit_codes(admin: Cluster, ns: str, model: str, registry: MlflowRegistry,
                                                 tmp_path: Path) -> None:
    # Cluster options without --namespace: exit 2, nothing moves.
    result = models("promote", registry, model, "1", "--target", "triton-cpu", "--canary", "5")
    assert result.code == 2 and result.err.count("\n") == 1
    assert "--canary, --target act on the served InferenceService: add --namespace NS" in result.err, result.err
    assert CHAMPION not in registry.aliases(model)
    # An unknown version: exit 2, nothing applied.
    result = models("promote", registry, model, "7", "--namespace", ns, "--no-smoke")
    assert result.code == 2 and f"{model} has no version 7" in _one_error_line(result)
    assert admin.get(*ISVC, model, ns) is None
    # A kubeconfig context that does not exist: exit 1.
    result = models("promote", registry, model, "1", "--namespace", ns, "--context", "nope", "--no-smoke")
    assert result.code == 1 and "No context 'nope' in the kubeconfig" in _one_error_line(result)
    # A stale --expect: exit 1 before anything is applied.
    result = models("promote", registry, model, "1", "--namespace", ns, "--expect", "2", "--no-smoke")
    assert result.code == 1 and "is unset, not 2 as read before; nothing was deployed" in _one_error_line(result)
    assert admin.get(*ISVC, model, ns) is None
    # The mode of an existing InferenceService cannot change: exit 2.
    assert models("promote", registry, model, "1", "--namespace", ns, "--target", "triton-cpu", "--no-smoke").code == 0
    result = models("promote", registry, model, "2", "--namespace", ns, "--mode", "Knative", "--no-smoke")
    assert result.code == 2 and "cannot change the deployment mode" in _one_error_line(result)
    # The gate runs first: version 2 passes against champion 1 and is rolled out; version 1 is held back.
    gated = models("promote", registry, model, "2", "--namespace", ns, "--gate", "--no-smoke")
    assert gated.code == 0 and gated.out.startswith("gate passed (promote)") and "serves" in gated.out
    held = models("promote", registry, model, "1", "--namespace", ns, "--gate", "--no-smoke")
    assert held.code == 0 and held.out.endswith(f"{model}@champion stays 2: version 1 was held back.\n")
    assert admin.get(*ISVC, model, ns)["metadata"]["annotations"]["pipeserve.dev/model-version"] == "2"
    # JSON output of a rollout.
    out = json.loads(models("rollback", registry, model, "--namespace", ns, "--no-smoke", "--output", "json").out)
    assert (out["action"], out["version"], out["previous"], out["change"]["to_version"]) == ("rollback", "1", "2", "1")


def test_the_smoke_inference_gates_the_alias(admin: Cluster, ns: str, model: str, registry: MlflowRegistry,
                                             tmp_path: Path) -> None:
    """Pods are simulated, so the smoke inference goes to a local server of the same registered version."""
    from pipeserve.localserver import LocalServer, free_port

    assert models("promote", registry, model, "1", "--namespace", ns, "--target", "triton-cpu", "--no-smoke").code == 0
    dead = f"http://127.0.0.1:{free_port()}"
    failed = models("promote", registry, model, "2", "--namespace", ns, "--smoke-url", dead, "--timeout", "30")
    assert failed.code == 1
    line = _one_error_line(failed)
    assert f"rollout of {model}/2 to {ns}/{model} failed: " in line and dead in line
    assert f"rolled {ns}/{model} back to version 1" in line and line.endswith(f"{model}@champion stays 1.")
    assert _served(admin, ns, model)[0] == "1" and registry.aliases(model)[CHAMPION] == "1"

    repository = registry.download(f"{model}/2", tmp_path / "served").parent
    with LocalServer.serve(repository) as server:
        passed = models("promote", registry, model, "2", "--namespace", ns, "--smoke-url", server.url)
    assert passed.code == 0, passed.err
    assert "smoke inference ok: {'label': [0], 'probabilities': [[" in passed.err
    assert _served(admin, ns, model)[0] == "2" and registry.aliases(model)[CHAMPION] == "2"


def test_an_alias_moved_during_the_rollout_puts_the_cluster_back(admin: Cluster, ns: str, model: str,
                                                                 registry: MlflowRegistry) -> None:
    """The alias is compare-and-set after Ready: another writer moving it meanwhile undoes the rollout."""
    from pipeserve.rollout import RolloutFailed, RolloutOptions, promote

    where = RolloutOptions(namespace=ns, spec_options={"target": "triton-cpu"}, timeout_s=30)
    promote(registry, admin, model, "1", where)

    def other_writer(base_url: str, name: str, n_features: int) -> dict[str, list[int]]:
        registry.set_alias(model, CHAMPION, "2", actor="someone-else")  # lands between Ready and the alias move
        return {"label": [0]}

    rolled = RolloutOptions(namespace=ns, timeout_s=30, smoke=other_writer)
    with pytest.raises(RolloutFailed) as info:
        promote(registry, admin, model, "2", rolled, expected="1")
    message = str(info.value)
    assert "it rolled out, but moving" in message and "Someone else moved it since" in message
    assert f"rolled {ns}/{model} back to version 1" in message and "this command did not move" in message
    assert info.value.restored and info.value.exit_code == 1
    assert _served(admin, ns, model)[0] == "1"


def test_a_version_the_served_runtime_cannot_load_is_refused_before_anything_is_applied(
        admin: Cluster, ns: str, registry: MlflowRegistry, weak_fit, tmp_path: Path) -> None:  # noqa: F811
    from pipeserve.workflow import fit_and_package

    name = f"ir{int(time.time() * 1000) % 10**8}"
    registry.register(renamed(weak_fit, name, tmp_path / "v1"))
    newer = fit_and_package("iris", tmp_path / "ir10", name="iris", serving_target="pipeserve")  # ONNX IR 10
    registry.register(renamed(newer, name, tmp_path / "v2"))
    assert models("promote", registry, name, "1", "--namespace", ns, "--target", "triton-cpu", "--no-smoke").code == 0
    generation = admin.get(*ISVC, name, ns)["metadata"]["generation"]
    result = models("promote", registry, name, "2", "--namespace", ns, "--no-smoke")
    assert result.code == 2
    line = _one_error_line(result)
    assert "needs ONNX IR 10" in line and "ONNX Runtime 1.15" in line
    assert admin.get(*ISVC, name, ns)["metadata"]["generation"] == generation
    assert registry.aliases(name)[CHAMPION] == "1"


def test_an_identity_that_may_only_touch_inference_services_still_rolls_out(
        admin: Cluster, ns: str, model: str, registry: MlflowRegistry, kubeconfig_for,  # type: ignore[no-untyped-def]
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline runner's Role (manifests/rbac): no Deployments to read, so Ready is all it can wait for."""
    admin.apply_objects([
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "runner", "namespace": ns}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "runner", "namespace": ns},
         "rules": [{"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"],
                    "verbs": ["create", "patch", "get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "runner", "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "runner"},
         "subjects": [{"kind": "ServiceAccount", "name": "runner", "namespace": ns}]},
    ])
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig_for("runner", ns)))
    result = models("promote", registry, model, "1", "--namespace", ns, "--target", "triton-cpu", "--no-smoke",
                    "--timeout", "60")
    assert result.code == 0, result.err
    assert "Cannot read Deployment" in result.err and "waiting for the InferenceService's Ready condition only" \
        in result.err
    assert f"{ns}/{model} serves {model}/1" in result.out
    assert _served(admin, ns, model)[0] == "1" and registry.aliases(model)[CHAMPION] == "1"


def test_a_sqlite_registry_needs_a_storage_uri_for_the_cluster(admin: Cluster, ns: str, good_fit,  # noqa: F811
                                                               empty_db: Path, tmp_path: Path) -> None:
    shutil.copy(empty_db, tmp_path / "mlflow.db")
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert run_cli("models", "register", str(good_fit.model_dir), "--registry", db).code == 0
    refused = run_cli("models", "promote", "iris", "1", "--registry", db, "--namespace", ns, "--target", "triton-cpu",
                      "--no-smoke")
    assert refused.code == 2 and "is in a local artifact store" in refused.err and refused.err.count("\n") == 1
    assert admin.get(*ISVC, "iris", ns) is None
    done = run_cli("models", "promote", "iris", "1", "--registry", db, "--namespace", ns, "--target", "triton-cpu",
                   "--no-smoke", "--storage-uri", "s3://models/iris/v1/", "--name", "iris-prod")
    assert done.code == 0, done.err
    assert f"{ns}/iris-prod serves iris/1 (Standard mode)" in done.out
    assert _served(admin, ns, "iris-prod")[:2] == ("1", "s3://models/iris/v1/")
    assert admin.get(*ISVC, "iris", ns) is None


# ---- Knative mode (with a stand-in for Knative Serving's status) ---------------------------------


class KnativeStandIn:
    """Writes the status of the Knative Services in one namespace as Knative Serving's controller would.

    A new revision ``<ksvc>-0000N`` for every new pod template (Knative names them after the
    Configuration's generation, which only a template change bumps), ``latestReadyRevisionName`` =
    ``latestCreatedRevisionName`` = it, the spec's traffic block with ``latestRevision`` resolved to
    it, Ready/ConfigurationsReady/RoutesReady True, ``observedGeneration`` = the generation. It
    touches nothing but that status; KServe's controller reacts to it as it would on a real cluster.
    """

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        from kubernetes import client, config

        self.api = client.CustomObjectsApi(config.new_client_from_config(config_file=str(kubeconfig)))
        self.namespace = namespace
        self.revisions: dict[str, list[tuple[str, str]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> KnativeStandIn:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                items = self.api.list_namespaced_custom_object("serving.knative.dev", "v1", self.namespace,
                                                               "services")["items"]
                for ksvc in items:
                    self._reconcile(ksvc)
            except Exception:  # noqa: BLE001 - a conflict or a deleted object: the next round sees it again
                continue

    def _reconcile(self, ksvc: dict[str, Any]) -> None:
        name, generation = ksvc["metadata"]["name"], ksvc["metadata"]["generation"]
        if (ksvc.get("status") or {}).get("observedGeneration") == generation:
            return
        template = json.dumps(ksvc["spec"]["template"], sort_keys=True)
        revisions = self.revisions.setdefault(name, [])
        if not revisions or revisions[-1][0] != template:
            revisions.append((template, f"{name}-{len(revisions) + 1:05d}"))
        latest = revisions[-1][1]
        traffic = [{**t, "revisionName": t.get("revisionName") or latest} for t in ksvc["spec"].get("traffic", [])]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        conditions = [{"type": t, "status": "True", "lastTransitionTime": now}
                      for t in ("ConfigurationsReady", "Ready", "RoutesReady")]
        status = {"observedGeneration": generation, "latestCreatedRevisionName": latest,
                  "latestReadyRevisionName": latest, "conditions": conditions, "traffic": traffic,
                  "url": f"http://{name}.{self.namespace}.example.com",
                  "address": {"url": f"http://{name}.{self.namespace}.svc.cluster.local"}}
        self.api.patch_namespaced_custom_object_status("serving.knative.dev", "v1", self.namespace, "services", name,
                                                       {"status": status})


def _traffic(admin: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    return admin.get(*KSVC, f"{name}-predictor", ns)["spec"]["traffic"]


def test_knative_canary_then_abort_then_promote_then_rollback(admin: Cluster, ns: str, model: str,
                                                              registry: MlflowRegistry, local_cluster: Path) -> None:
    with KnativeStandIn(local_cluster, ns):
        first = models("promote", registry, model, "1", "--namespace", ns, "--mode", "Knative", "--target",
                       "triton-cpu", "--no-smoke", "--timeout", "60")
        assert first.code == 0, first.err
        assert f"serves {model}/1 (Knative mode): rolled out and Ready" in first.out
        assert "100 % to " in first.out and f"{model}-predictor-00001 (latest)" in first.out
        rev1 = f"{model}-predictor-00001"
        status = admin.get(*ISVC, model, ns)["status"]["components"]["predictor"]
        assert status["latestRolledoutRevision"] == rev1
        assert _traffic(admin, ns, model) == [{"latestRevision": True, "percent": 100}]

        # Canary: version 2 gets 10 %, the revision rolled out before keeps 90 % (KServe's "prev" tag).
        canary = models("promote", registry, model, "2", "--namespace", ns, "--canary", "10", "--no-smoke",
                        "--timeout", "60")
        assert canary.code == 0, canary.err
        assert _traffic(admin, ns, model) == [
            {"latestRevision": True, "percent": 10},
            {"latestRevision": False, "percent": 90, "revisionName": rev1, "tag": "prev"}]
        assert canary.out.splitlines()[0] == (
            f"{ns}/{model}: {model}/2 is the canary: 10 % to {model}-predictor-00002 (latest), 90 % to {rev1} (prev); "
            f"{model}@champion stays 1.")
        isvc = admin.get(*ISVC, model, ns)
        assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10
        assert isvc["metadata"]["annotations"]["pipeserve.dev/model-version"] == "2"
        assert registry.aliases(model)[CHAMPION] == "1"
        assert rollouts(registry, model, "2")[-1].outcome == "canary"

        # Rollback during the canary: canaryTrafficPercent 0, everything back on the previous revision.
        abort = models("rollback", registry, model, "--namespace", ns, "--no-smoke", "--timeout", "60")
        assert abort.code == 0, abort.err
        assert _traffic(admin, ns, model) == [
            {"latestRevision": True, "percent": 0},
            {"latestRevision": False, "percent": 100, "revisionName": rev1, "tag": "prev"}]
        assert abort.out.startswith(f"{ns}/{model}: canary of {model}/2 aborted: 0 % to {model}-predictor-00002")
        assert registry.aliases(model)[CHAMPION] == "1"
        assert rollouts(registry, model, "2")[-1].outcome == "canary-aborted"

        # Canary again, then promote it to all traffic: the alias moves once Knative reports it.
        assert models("promote", registry, model, "2", "--namespace", ns, "--canary", "30", "--no-smoke").code == 0
        assert [t["percent"] for t in _traffic(admin, ns, model)] == [30, 70]
        full = models("promote", registry, model, "2", "--namespace", ns, "--no-smoke", "--timeout", "60")
        assert full.code == 0, full.err
        assert full.out.splitlines()[0].startswith(f"{model}@champion: 1 → 2 (promote, #")
        assert _traffic(admin, ns, model) == [{"latestRevision": True, "percent": 100}]
        assert "canaryTrafficPercent" not in admin.get(*ISVC, model, ns)["spec"]["predictor"]
        rev2 = f"{model}-predictor-00002"  # no new revision: only the traffic changed
        status = wait_for(lambda: (c := admin.get(*ISVC, model, ns)["status"]["components"]["predictor"])
                        .get("latestRolledoutRevision") == rev2 and c, "KServe's rolled-out revision")
        assert status["previousRolledoutRevision"] == rev1

        # Rollback after a full promote: version 1's spec again, a new revision with all traffic.
        back = models("rollback", registry, model, "--namespace", ns, "--no-smoke", "--timeout", "60")
        assert back.code == 0, back.err
        assert f"100 % to {model}-predictor-00003 (latest)" in back.out
        assert registry.aliases(model)[CHAMPION] == "1"
        assert admin.get(*ISVC, model, ns)["metadata"]["annotations"]["pipeserve.dev/model-version"] == "1"


def test_knative_without_a_rolled_out_revision(admin: Cluster, ns: str, model: str, registry: MlflowRegistry) -> None:
    """No Knative controller, no stand-in: nothing ever rolls out, and KServe 0.20 then ignores a canary."""
    applied = models("promote", registry, model, "1", "--namespace", ns, "--mode", "Knative", "--target", "triton-cpu",
                     "--no-smoke", "--no-wait")
    assert applied.code == 0, applied.err
    assert "applied, not waited for" in applied.out and "note: not waited for" in applied.out
    ksvc = wait_for(lambda: admin.get(*KSVC, f"{model}-predictor", ns), "the Knative Service")
    assert ksvc["spec"]["traffic"] == [{"latestRevision": True, "percent": 100}]
    refused = models("promote", registry, model, "2", "--namespace", ns, "--canary", "10", "--no-smoke")
    assert refused.code == 2 and "has no revision rolled out to 100 % yet" in refused.err
    # Asked directly, the controller shows why: with no rolled-out revision the canary gets everything.
    from pipeserve.rollout import snapshot

    doc = snapshot(admin.get(*ISVC, model, ns))
    doc["spec"]["predictor"]["canaryTrafficPercent"] = 10
    doc["metadata"]["annotations"]["pipeserve.dev/probe"] = "canary-10"  # copied onto the template: KServe saw it
    admin.apply_objects([doc], force_conflicts=True)
    wait_for(lambda: admin.get(*KSVC, f"{model}-predictor", ns)["spec"]["template"]["metadata"]["annotations"]
           .get("pipeserve.dev/probe") == "canary-10", "KServe to reconcile the canary")
    assert _traffic(admin, ns, model) == [{"latestRevision": True, "percent": 100}]
    # Waiting for a rollout times out with Knative's state as the reason; putting it back cannot finish either.
    result = models("promote", registry, model, "2", "--namespace", ns, "--no-smoke", "--timeout", "3")
    assert result.code == 1
    line = _one_error_line(result)
    assert "not reconciled by Knative Serving yet" in line and "is Knative Serving's controller running?" in line
    assert f"putting {ns}/{model} back to version 1 failed too" in line
    assert registry.aliases(model)[CHAMPION] == "1"
