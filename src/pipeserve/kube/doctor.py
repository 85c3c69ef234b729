"""`pipeserve doctor`: will this InferenceService work on this cluster? Checked before anything is applied.

Each check reads the cluster through :class:`~pipeserve.kube.client.Cluster` and returns a
:class:`Check` with a one-line reason and the fix. ``deploy`` runs them first and stops on a
failure, so a user sees "KServe is not installed" or "you may not create InferenceServices" in one
line instead of a 404 or 403 halfway through, and "no GPU node" instead of a pod Pending forever.
A check the caller has no right to run (listing nodes, say) is reported as skipped, not failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeserve import runtimes
from pipeserve.errors import ClusterError
from pipeserve.kube import kserve
from pipeserve.kube.client import Cluster
from pipeserve.kube.spec import DeploymentSpec
from pipeserve.modelcard import ModelCard

OK, FAILED, SKIPPED = "ok", "failed", "skipped"
KEDA_SCALED_OBJECT = ("keda.sh/v1alpha1", "ScaledObject")
RUNTIME_KINDS = (
    ("serving.kserve.io/v1alpha1", "ServingRuntime"),
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"),
)
# What deploy does with InferenceServices: server-side apply (create + patch), then get/watch for Ready.
DEPLOY_VERBS = ("create", "patch", "get", "watch")


@dataclass(frozen=True)
class Check:
    """One preflight check's outcome."""

    name: str
    status: str
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    def line(self) -> str:
        fix = f" Fix: {self.fix}" if self.fix and self.status != OK else ""
        return f"{self.status:<7} {self.name}: {self.detail}{fix}"


@dataclass(frozen=True)
class Preflight:
    """What the checks need: where, how, and (optionally) which model."""

    spec: DeploymentSpec
    namespace: str
    card: ModelCard | None = None


def run_checks(cluster: Cluster, plan: Preflight) -> list[Check]:
    """Run every check in order; a check that cannot read what it needs is skipped with the reason."""
    out = []
    for check in CHECKS:
        try:
            out.append(check(cluster, plan))
        except ClusterError as exc:
            out.append(Check(check.__name__.replace("_", " "), SKIPPED, f"could not check: {exc}"))
    return out


def kserve_crds(cluster: Cluster, plan: Preflight) -> Check:
    name = "KServe CRDs"
    if not cluster.knows(kserve.API_VERSION, kserve.KIND):
        return Check(name, FAILED, "the cluster does not know serving.kserve.io/v1beta1 InferenceService",
                     "install KServe 0.21 (its CRDs and controller), or run `make cluster-up` for a local one.")
    try:
        crd = cluster.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "inferenceservices.serving.kserve.io")
    except ClusterError:
        crd = None  # a namespaced identity may not read CRDs: discovery said enough
    if crd is None:
        return Check(name, OK, "InferenceService v1beta1 served (this identity may not read the CRD's version)")
    versions = [v["name"] for v in crd["spec"]["versions"] if v.get("served")]
    predictor = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    level = "0.21 (spec.tracing)" if "tracing" in predictor else "0.20 or older (no spec.tracing)"
    return Check(name, OK, f"InferenceService {', '.join(versions)} served; CRD level {level}")


def runtime_present(cluster: Cluster, plan: Preflight) -> Check:
    spec, name = plan.spec, f"runtime {plan.spec.runtime}"
    fmt = "sklearn" if spec.target == "sklearnserver" else "onnx"
    found = cluster.get(*RUNTIME_KINDS[0], spec.runtime, plan.namespace) or cluster.get(*RUNTIME_KINDS[1], spec.runtime)
    if found is None:
        fix = ("kubectl apply -k manifests/runtime" if spec.runtime == runtimes.PIPESERVE_RUNTIME
               else "install KServe's default ClusterServingRuntimes (config/runtimes), or pick another --target.")
        return Check(name, FAILED, f"no ServingRuntime or ClusterServingRuntime named {spec.runtime}", fix)
    rt = found.get("spec") or {}
    formats = [f.get("name") for f in rt.get("supportedModelFormats") or []]
    if fmt not in formats:
        return Check(name, FAILED, f"{spec.runtime} supports {', '.join(formats) or 'no formats'}, not {fmt}",
                     "pick a target whose runtime serves this format.")
    if "v2" not in (rt.get("protocolVersions") or []):
        return Check(name, FAILED, f"{spec.runtime} does not speak the v2 protocol", "pick another --target.")
    tag = _image_tag(rt.get("containers") or [])
    detail = f"{found['kind']} {spec.runtime} serves {fmt} over v2 (image tag {tag or '?'})"
    if plan.card is not None and runtimes.loads_onnx(spec.runtime):
        # What loads is decided by the image that actually runs: the override, else the installed tag.
        target = runtimes.onnx_target(spec.runtime, spec.runtime_version or tag)
        try:
            runtimes.check_loadable(plan.card.onnx, target, f"{plan.card.name} v{plan.card.version}")
        except runtimes.RuntimeIncompatible as exc:
            return Check(name, FAILED, str(exc), f"re-package with --runtime-version {target.runtime_version}.")
        detail += f"; loads the model (ONNX Runtime {target.onnxruntime})"
    return Check(name, OK, detail)


def gpu_capacity(cluster: Cluster, plan: Preflight) -> Check:
    spec, name = plan.spec.resolved(), "GPU capacity"
    if not spec.gpus:
        return Check(name, OK, "no GPU requested")
    if not cluster.can_i("list", "nodes"):
        return Check(name, SKIPPED, "this identity may not list nodes, so GPU capacity cannot be checked")
    nodes = cluster.list("v1", "Node")
    fitting = [n["metadata"]["name"] for n in nodes
               if _int(((n.get("status") or {}).get("allocatable") or {}).get(spec.gpu_resource)) >= spec.gpus
               and _selected(n, spec.node_selector) and _tolerated(n, spec.tolerations)]
    if not fitting:
        return Check(name, FAILED, f"no node offers {spec.gpus} {spec.gpu_resource} and matches nodeSelector "
                     f"{dict(spec.node_selector)} with the tolerations given ({len(nodes)} nodes checked)",
                     "add GPU nodes (NVIDIA GPU operator), fix --node-selector/--toleration, "
                     "or use --target triton-cpu.")
    return Check(name, OK, f"{len(fitting)} node(s) can take the predictor: {', '.join(fitting)}")


def deploy_rights(cluster: Cluster, plan: Preflight) -> Check:
    name = "your rights"
    denied = [v for v in DEPLOY_VERBS if not cluster.can_i(v, "inferenceservices", "serving.kserve.io", plan.namespace)]
    if denied:
        return Check(name, FAILED, f"this identity may not {'/'.join(denied)} inferenceservices.serving.kserve.io in "
                     f"namespace {plan.namespace}",
                     "bind it to a Role granting create/patch/get/list/watch on inferenceservices "
                     "(kubectl apply -k manifests/rbac -n NAMESPACE).")
    return Check(name, OK, f"may {'/'.join(DEPLOY_VERBS)} inferenceservices in {plan.namespace}")


def storage_identity(cluster: Cluster, plan: Preflight) -> Check:
    name, account = "storage credentials", plan.spec.service_account_name
    if not account:
        return Check(name, OK, "no ServiceAccount referenced (the storage must be readable anonymously)")
    sa = cluster.get("v1", "ServiceAccount", account, plan.namespace)
    if sa is None:
        return Check(name, FAILED, f"ServiceAccount {account} does not exist in namespace {plan.namespace}",
                     "create it (pipeserve manifest --s3-credentials NAME writes it with its Secret).")
    missing = [s["name"] for s in sa.get("secrets") or []
               if cluster.get("v1", "Secret", s["name"], plan.namespace) is None]
    if missing:
        return Check(name, FAILED, f"ServiceAccount {account} names Secret {', '.join(missing)}, which does not exist",
                     "create the Secret with the bucket credentials (pipeserve manifest --s3-credentials).")
    return Check(name, OK, f"ServiceAccount {account} and its Secret(s) exist")


def runtime_class(cluster: Cluster, plan: Preflight) -> Check:
    name, wanted = "runtime class", plan.spec.runtime_class_name
    if not wanted:
        return Check(name, OK, "no runtimeClassName requested")
    if cluster.get("node.k8s.io/v1", "RuntimeClass", wanted) is None:
        return Check(name, FAILED, f"RuntimeClass {wanted} does not exist, so the API server refuses the pods",
                     "install the NVIDIA container toolkit's RuntimeClass, or drop --runtime-class.")
    return Check(name, OK, f"RuntimeClass {wanted} exists")


def mode_installed(cluster: Cluster, plan: Preflight) -> Check:
    spec, name = plan.spec.resolved(), "deployment mode"
    if spec.mode == kserve.KNATIVE and not cluster.knows(*kserve.KNATIVE_SERVICE):
        return Check(name, FAILED,
                     "Knative mode, but Knative Serving is not installed (no serving.knative.dev Service)",
                     "use --mode Standard, or install Knative Serving.")
    if spec.autoscaler == "keda" and not cluster.knows(*KEDA_SCALED_OBJECT):
        return Check(name, FAILED, "the keda autoscaler, but KEDA is not installed (no keda.sh ScaledObject)",
                     "install KEDA, or use the hpa autoscaler.")
    return Check(name, OK, f"{spec.mode} mode with the {spec.autoscaler} autoscaler is installed")


CHECKS: tuple[Callable[[Cluster, Preflight], Check], ...] = (
    kserve_crds, runtime_present, gpu_capacity, deploy_rights, storage_identity, runtime_class, mode_installed,
)


def _image_tag(containers: Iterable[Mapping[str, Any]]) -> str | None:
    for container in containers:
        image = str(container.get("image") or "")
        if ":" in image.rsplit("/", 1)[-1]:
            return image.rsplit(":", 1)[-1]
    return None


def _int(value: Any) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


def _selected(node: Mapping[str, Any], selector: Mapping[str, str]) -> bool:
    labels = (node.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def _tolerated(node: Mapping[str, Any], tolerations: Iterable[Any]) -> bool:
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(t.key == taint.get("key") and (t.operator == "Exists" or t.value == taint.get("value"))
                   and t.effect in (None, taint.get("effect")) for t in tolerations):
            return False
    return True
