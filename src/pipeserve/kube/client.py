"""The one module of pipeserve that talks to a Kubernetes cluster.

Everything else under :mod:`pipeserve.kube` is pure. Here, all through the kubernetes dynamic
client: server-side apply, get, a watch until the InferenceService is Ready, and delete; plus a v2
smoke inference. Every failure to reach or convince the cluster becomes a
:class:`~pipeserve.errors.ClusterError` with one line saying what happened and what to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeserve.errors import ClusterError, UserError
from pipeserve.kube import kserve

FIELD_MANAGER = "pipeserve"


class ManifestRejected(UserError):
    """The API server or an admission webhook refused a manifest (exit 2: the manifest must change)."""


@dataclass(frozen=True)
class Readiness:
    """What the InferenceService reported when the wait ended."""

    ready: bool
    url: str | None
    conditions: dict[str, str]


class Cluster:
    """A connection to one cluster (kubeconfig context or in-cluster config).

    Args:
        context: kubeconfig context; None for the current one (or in-cluster config in a pod).
        kubeconfig: kubeconfig path(s), ``:``-separated; None reads ``KUBECONFIG`` when connecting
            (the kubernetes package reads it at import time, too early for a CLI), else ~/.kube/config.
    """

    def __init__(self, context: str | None = None, kubeconfig: str | None = None) -> None:
        self.context = context
        self.kubeconfig = kubeconfig
        self._api_client: Any = None
        self._dynamic: Any = None
        self._namespace: str = "default"
        self._context_name: str | None = None

    def connect(self) -> Cluster:
        """Load credentials and check that the API server answers.

        Raises:
            ClusterError: no kubeconfig, unknown context, or the API server is unreachable.
        """
        import os

        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        kubeconfig = self.kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        try:
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
            if self.context:
                active = next((c for c in contexts if c["name"] == self.context), None)
                if active is None:
                    names = ", ".join(c["name"] for c in contexts)
                    raise ClusterError(f"No context {self.context!r} in the kubeconfig; it has: {names}.")
            config.load_kube_config(config_file=kubeconfig, context=self.context)
            self._namespace = active.get("context", {}).get("namespace") or "default"
            self._context_name = active.get("name")
        except (ConfigException, FileNotFoundError) as exc:
            try:
                config.load_incluster_config()
            except ConfigException:
                raise ClusterError(
                    "No Kubernetes cluster configured: no kubeconfig (KUBECONFIG or ~/.kube/config) and not running "
                    "in a pod. Point KUBECONFIG at a cluster with KServe 0.21, or use --dry-run to print the manifests."
                ) from exc
            self._namespace = _incluster_namespace()
            self._context_name = "in-cluster"
        self._api_client = client.ApiClient()
        try:
            client.VersionApi(self._api_client).get_code(_request_timeout=10)
        except Exception as exc:  # urllib3/ssl/Api errors all mean "this cluster is not usable"
            host = self._api_client.configuration.host
            raise ClusterError(
                f"Kubernetes API server {host} is unreachable ({_short(exc)}); check the kubeconfig context and "
                "network, or use --dry-run to print the manifests."
            ) from exc
        return self

    @property
    def namespace(self) -> str:
        """The namespace used for documents that do not name one."""
        return self._namespace

    @property
    def context_name(self) -> str | None:
        """The kubeconfig context in use (``in-cluster`` inside a pod; None before :meth:`connect`)."""
        return self._context_name

    @property
    def server(self) -> str | None:
        """The API server's URL (None before :meth:`connect`)."""
        return self._api_client.configuration.host if self._api_client is not None else None

    def apply(self, docs: Iterable[Mapping[str, Any]], force_conflicts: bool = False) -> list[str]:
        """Server-side apply each document (field manager ``pipeserve``); return ``Kind/name`` applied."""
        return [f"{o['kind']}/{o['metadata']['name']}" for o in self.apply_objects(docs, force_conflicts)]

    def apply_objects(self, docs: Iterable[Mapping[str, Any]], force_conflicts: bool = False,
                      dry_run: bool = False) -> list[dict[str, Any]]:
        """Server-side apply with strict field validation; return the objects as the API server stored them.

        Args:
            docs: Manifests (plain dicts).
            force_conflicts: Take over fields another field manager owns.
            dry_run: Run admission (webhooks included) and validation, store nothing.

        Raises:
            ManifestRejected: the API server or an admission webhook refused a document (its message
                verbatim; exit code 2, it is the manifest that must change).
            ClusterError: anything else, e.g. 403 Forbidden (the message names the verb and resource).
        """
        from kubernetes.client.exceptions import ApiException
        from kubernetes.dynamic.exceptions import DynamicApiError

        out = []
        for doc in docs:
            kind, name = doc["kind"], doc["metadata"]["name"]
            resource = self._resource(doc["apiVersion"], kind)
            namespace = (doc["metadata"].get("namespace") or self.namespace) if resource.namespaced else None
            query = [("fieldValidation", "Strict")] + ([("dryRun", "All")] if dry_run else [])
            try:
                stored = self._dynamic.server_side_apply(
                    resource, body=dict(doc), name=name, namespace=namespace,
                    field_manager=FIELD_MANAGER, force_conflicts=force_conflicts, query_params=query,
                )
            except (ApiException, DynamicApiError) as exc:
                status, reason = getattr(exc, "status", None), _api_reason(exc)
                # A webhook's denial comes back as 403 (controller-runtime's default code), not as a 4xx
                # of the API server's own validation: it still means "change the manifest".
                webhook = "admission webhook" in reason and "denied the request" in reason
                error = ManifestRejected if status in (400, 422) or webhook else ClusterError
                hint = " (another field manager owns these fields: --force-conflicts takes them over)" \
                    if status == 409 else ""
                raise error(f"The cluster refused {kind}/{name}: {reason}{hint}") from exc
            out.append(stored.to_dict())
        return out

    def wait_ready(
        self,
        name: str,
        namespace: str | None = None,
        timeout_s: float = 600,
        poll_s: float = 5,
        progress: Callable[[str], None] | None = None,
    ) -> Readiness:
        """Poll the InferenceService until its Ready condition is True, reporting condition changes.

        Raises:
            ClusterError: it did not become Ready in time (the message carries the last conditions).
        """
        namespace = namespace or self.namespace
        deadline = time.monotonic() + timeout_s
        last = ""
        state = Readiness(False, None, {})
        while True:
            obj = self.get_inference_service(name, namespace)
            state = _readiness(obj)
            summary = ", ".join(f"{k}={v}" for k, v in sorted(state.conditions.items())) or "no status yet"
            if progress and summary != last:
                progress(summary)
                last = summary
            if state.ready:
                return state
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pods = self.pod_problem(name, namespace)
                raise ClusterError(
                    f"InferenceService {namespace}/{name} not Ready after {timeout_s:.0f}s ({summary})"
                    f"{f'; predictor pod: {pods}' if pods else ''}; see `kubectl describe inferenceservice {name} "
                    f"-n {namespace}` and the predictor pod's events."
                )
            self._wait_for_change(name, namespace, obj, min(poll_s, remaining))

    def wait_rolled_out(
        self,
        isvc: Mapping[str, Any],
        timeout_s: float = 600,
        poll_s: float = 1.0,
        progress: Callable[[str], None] | None = None,
    ) -> Readiness:
        """Wait until the controller runs *this* spec of the InferenceService, then until it is Ready.

        KServe's Ready condition lags behind a change. In Standard mode it stays True on the old
        ReplicaSet while the new pods are Pending (the Deployment is still Available) until the
        Deployment's progress deadline (KServe sets 600 s) passes; in Knative mode it reports the
        previous revision until Knative's status catches up. So this waits until the controller's
        workload carries the spec (pipeserve's annotations, storage URI, placement, resources) and
        has rolled it out: in Standard mode the predictor Deployment by ``kubectl rollout status``'s
        rule (new ReplicaSet updated and available, no old pods left); in Knative mode the Knative
        Service's latest revision Ready for its current generation, as KServe propagated it.

        Args:
            isvc: The InferenceService as applied (the stored object :meth:`apply_objects` returned).
            timeout_s: How long to wait.
            poll_s: Longest pause between reads (they start 50 ms apart and back off to it).
            progress: Called with a line whenever the state changes.

        Raises:
            ClusterError: not rolled out in time (with the scheduler's or Knative's reason), or the
                Deployment exceeded its progress deadline.

        An identity that may not read the workload (Deployment or Knative Service) gets the
        InferenceService's Ready condition only, and a progress line saying so.
        """
        meta = isvc["metadata"]
        name, namespace = meta["name"], meta.get("namespace") or self.namespace
        knative = _mode(isvc) == kserve.KNATIVE
        deadline = time.monotonic() + timeout_s
        last = ""
        blind = False
        pause = 0.05
        while True:
            obj = self.get_inference_service(name, namespace)
            state = _readiness(obj)
            pending = None
            if not blind:
                kind = KNATIVE_SERVICE if knative else ("apps/v1", "Deployment")
                try:
                    workload = self.get(*kind, f"{name}-predictor", namespace)
                except ClusterError as exc:  # e.g. a pipeline identity that may not read Deployments
                    blind = True
                    if progress:
                        progress(f"{str(exc).rstrip('.')}; waiting for the InferenceService's Ready condition "
                                 "only, which KServe may report before the new pods run")
                else:
                    pending = _knative_pending(isvc, workload, obj) if knative else _deployment_pending(isvc, workload)
            if pending is None and not state.ready:
                pending = "InferenceService " + (", ".join(f"{k}={v}" for k, v in sorted(state.conditions.items()))
                                                 or "has no status yet")
            summary = pending or "rolled out, Ready"
            if progress and summary != last:
                progress(summary)
                last = summary
            if pending is None:
                return state
            if pending.startswith(_DEADLINE_EXCEEDED):
                raise ClusterError(f"InferenceService {namespace}/{name} did not roll out: {pending}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pods = None if knative else self.pod_problem(name, namespace)
                raise ClusterError(
                    f"InferenceService {namespace}/{name} not Ready after {timeout_s:.0f}s ({pending})"
                    f"{f'; predictor pod: {pods}' if pods else ''}; see `kubectl describe inferenceservice {name} "
                    f"-n {namespace}` and the predictor pod's events."
                )
            time.sleep(min(pause, remaining))
            pause = min(pause * 1.5, poll_s)

    def get_inference_service(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        """The InferenceService as the API server has it (a plain dict).

        Raises:
            ClusterError: it does not exist, or it cannot be read.
        """
        namespace = namespace or self.namespace
        found = self.get(kserve.API_VERSION, kserve.KIND, name, namespace)
        if found is None:
            raise ClusterError(f"InferenceService {namespace}/{name} does not exist.")
        return found

    def pod_problem(self, name: str, namespace: str) -> str | None:
        """Why the InferenceService's pods are not running (the scheduler's or kubelet's words), if readable."""
        try:
            pods = self.list("v1", "Pod", namespace, label_selector=f"serving.kserve.io/inferenceservice={name}")
        except ClusterError:
            return None  # e.g. a pipeline identity that may not read pods: the ISVC conditions must do
        for pod in pods:
            status = pod.get("status") or {}
            for cond in status.get("conditions") or []:
                if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                    return f"{pod['metadata']['name']} is {status.get('phase', 'Pending')}: {cond.get('message')}"
            for container in status.get("containerStatuses") or []:
                waiting = (container.get("state") or {}).get("waiting")
                if waiting:
                    return f"{pod['metadata']['name']}: {waiting.get('reason')} {waiting.get('message') or ''}".strip()
        return None

    def delete_inference_service(self, name: str, namespace: str | None = None) -> None:
        """Delete an InferenceService; deleting one that is already gone is not an error."""
        self.delete(kserve.API_VERSION, kserve.KIND, name, namespace or self.namespace)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> None:
        """Delete one object; one that is already gone is not an error."""
        from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError

        resource = self._resource(api_version, kind)
        try:
            resource.delete(name=name, namespace=namespace if resource.namespaced else None)
        except NotFoundError:
            return
        except DynamicApiError as exc:
            raise ClusterError(f"Cannot delete {kind} {_where(namespace, name)}: {_api_reason(exc)}") from exc

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """One object as a plain dict, or None when it does not exist.

        Raises:
            ClusterError: the kind is unknown to the cluster, or reading was refused.
        """
        from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError

        resource = self._resource(api_version, kind)
        try:
            return resource.get(name=name, namespace=namespace if resource.namespaced else None).to_dict()
        except NotFoundError:
            return None
        except DynamicApiError as exc:
            raise ClusterError(f"Cannot read {kind} {_where(namespace, name)}: {_api_reason(exc)}") from exc

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None) -> list[dict[str, Any]]:
        """Objects of a kind (in ``namespace`` for namespaced kinds), as plain dicts.

        Raises:
            ClusterError: the kind is unknown to the cluster, or listing was refused.
        """
        from kubernetes.dynamic.exceptions import DynamicApiError

        resource = self._resource(api_version, kind)
        try:
            found = resource.get(namespace=namespace if resource.namespaced else None, label_selector=label_selector)
        except DynamicApiError as exc:
            raise ClusterError(f"Cannot list {kind} in {namespace or 'the cluster'}: {_api_reason(exc)}") from exc
        return [item.to_dict() for item in found.items]

    def knows(self, api_version: str, kind: str) -> bool:
        """Whether the API server serves this kind (its CRD is installed)."""
        try:
            self._resource(api_version, kind)
        except ClusterError:
            return False
        return True

    def can_i(self, verb: str, resource: str, group: str = "", namespace: str | None = None) -> bool:
        """Whether the caller may ``verb`` ``resource`` (a SelfSubjectAccessReview, as `kubectl auth can-i`)."""
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": {"verb": verb, "resource": resource, "group": group,
                                                  "namespace": namespace or ""}}}
        from kubernetes.dynamic.exceptions import DynamicApiError

        api = self._resource("authorization.k8s.io/v1", "SelfSubjectAccessReview")
        try:
            answer = api.create(body=review).to_dict()
        except DynamicApiError as exc:
            raise ClusterError(f"Cannot ask the API server what this identity may do: {_api_reason(exc)}") from exc
        return bool((answer.get("status") or {}).get("allowed"))

    def _wait_for_change(self, name: str, namespace: str, seen: Mapping[str, Any], timeout_s: float) -> None:
        """Block until the object changes after ``seen`` (a watch from its resourceVersion) or ``timeout_s``."""
        from kubernetes.dynamic.exceptions import DynamicApiError

        resource = self._resource(kserve.API_VERSION, kserve.KIND)
        version = (seen.get("metadata") or {}).get("resourceVersion")
        try:
            for _ in resource.watch(namespace=namespace, field_selector=f"metadata.name={name}",
                                    resource_version=version, timeout=max(1, int(timeout_s))):
                return
        except DynamicApiError:
            time.sleep(min(timeout_s, 1.0))  # e.g. 410 Gone: the next get() starts afresh

    def _resource(self, api_version: str, kind: str) -> Any:
        from kubernetes import dynamic
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        if self._dynamic is None:
            self._dynamic = dynamic.DynamicClient(self._require())
        try:
            return self._dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError as exc:
            raise ClusterError(f"The cluster does not know {api_version} {kind}; install KServe 0.21 (its CRDs) "
                               "first.") from exc

    def _require(self) -> Any:
        if self._api_client is None:
            self.connect()
        return self._api_client


def smoke_infer(base_url: str, model_name: str, n_features: int, timeout_s: float = 30) -> dict[str, list[Any]]:
    """Send one all-zeros FP32 row to ``/v2/models/<model_name>/infer``; return each output's values.

    Raises:
        ClusterError: the endpoint is unreachable or the inference failed.
    """
    import numpy as np

    from pipeserve.smoke import SmokeTestFailed, smoke_request

    try:
        return smoke_request(base_url, model_name, np.zeros((1, n_features), np.float32), timeout_s)
    except SmokeTestFailed as exc:
        raise ClusterError(exc.message) from exc


def _where(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _readiness(obj: Mapping[str, Any]) -> Readiness:
    status = obj.get("status") or {}
    conditions = status.get("conditions") or []
    return Readiness(
        ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
        url=status.get("url"),
        conditions={c["type"]: c.get("status", "Unknown") + (f" ({c['reason']})" if c.get("reason") else "")
                    for c in conditions},
    )


KNATIVE_SERVICE = ("serving.knative.dev/v1", "Service")
_DEADLINE_EXCEEDED = "the Deployment exceeded its progress deadline"
# Written by KServe on the predictor's pod template: the storage URI its storage initializer fetches.
_SOURCE_URI = "internal.serving.kserve.io/storage-initializer-sourceuri"
_VERSION_ANNOTATION = "pipeserve.dev/model-version"


def _mode(isvc: Mapping[str, Any]) -> str:
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    mode = annotations.get(kserve.ANNOTATION_MODE) or (isvc.get("status") or {}).get("deploymentMode") or ""
    return kserve.LEGACY_MODES.get(mode, mode)


def template_difference(isvc: Mapping[str, Any], template: Mapping[str, Any]) -> str | None:
    """What the workload's pod template lacks of the InferenceService's spec, or None if it carries it.

    Compares what pipeserve sets: the ``pipeserve.dev/*`` annotations and the predictor's own,
    the storage URI (Standard mode), node selector, tolerations, ServiceAccount, RuntimeClass,
    the runtime image tag and the model container's resources.
    """
    from kubernetes.utils import parse_quantity

    meta = isvc.get("metadata") or {}
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    model = predictor.get("model") or {}
    want = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith("pipeserve.dev/")}
    want.update(predictor.get("annotations") or {})
    got = (template.get("metadata") or {}).get("annotations") or {}
    stale = sorted((k for k, v in want.items() if got.get(k) != v), key=lambda k: (k != _VERSION_ANNOTATION, k))
    if stale:
        return f"annotation {stale[0]} is {got.get(stale[0])!r}, not {want[stale[0]]!r}"
    if _SOURCE_URI in got and model.get("storageUri") and got[_SOURCE_URI] != model["storageUri"]:
        return f"storage URI {got[_SOURCE_URI]}, not {model['storageUri']}"
    pod = template.get("spec") or {}
    selector = pod.get("nodeSelector") or {}
    if any(selector.get(k) != v for k, v in (predictor.get("nodeSelector") or {}).items()):
        return f"nodeSelector {selector}"
    tolerations = pod.get("tolerations") or []
    if any(t not in tolerations for t in predictor.get("tolerations") or []):
        return f"tolerations {tolerations}"
    for field in ("serviceAccountName", "runtimeClassName"):
        if predictor.get(field) and pod.get(field) != predictor[field]:
            return f"{field} {pod.get(field)}"
    container = next((c for c in pod.get("containers") or [] if c.get("name") == "kserve-container"), None)
    if container is None:
        return "no kserve-container"
    if model.get("runtimeVersion") and not str(container.get("image", "")).endswith(f":{model['runtimeVersion']}"):
        return f"image {container.get('image')}"
    have = container.get("resources") or {}
    for kind in ("limits", "requests"):
        for key, value in ((model.get("resources") or {}).get(kind) or {}).items():
            current = (have.get(kind) or {}).get(key)
            if current is None or parse_quantity(str(current)) != parse_quantity(str(value)):
                return f"{kind} {key}={current}"
    return None


def _condition(obj: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return {}


def _deployment_pending(isvc: Mapping[str, Any], deployment: Mapping[str, Any] | None) -> str | None:
    """Why the predictor Deployment has not rolled out the InferenceService's spec yet (None: it has)."""
    if deployment is None:
        return "waiting for KServe to create the predictor Deployment"
    name = deployment["metadata"]["name"]
    differs = template_difference(isvc, (deployment.get("spec") or {}).get("template") or {})
    if differs:
        return f"waiting for KServe to update Deployment {name} ({differs})"
    status = deployment.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(deployment["metadata"].get("generation") or 0):
        return f"waiting for the Deployment controller to see Deployment {name}'s new spec"
    progressing = _condition(deployment, "Progressing")
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return f"{_DEADLINE_EXCEEDED}: {progressing.get('message')}"
    wanted = int((deployment.get("spec") or {}).get("replicas", 1) or 0)
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    old = max(total - updated, 0)
    serving = f" ({old} old one(s) still serving)" if old else ""
    if updated < wanted:
        return f"Deployment {name}: {updated} of {wanted} new replica(s) created{serving}"
    new_available = max(available - old, 0) if old else available
    if old or available < updated:
        return f"Deployment {name}: {min(new_available, updated)} of {updated} new replica(s) available{serving}"
    return None


def _knative_pending(isvc: Mapping[str, Any], ksvc: Mapping[str, Any] | None, stored: Mapping[str, Any]) -> str | None:
    """Why the Knative Service has not rolled out the InferenceService's spec yet (None: it has)."""
    if ksvc is None:
        return "waiting for KServe to create the Knative Service"
    name = ksvc["metadata"]["name"]
    differs = template_difference(isvc, (ksvc.get("spec") or {}).get("template") or {})
    if differs:
        return f"waiting for KServe to update Knative Service {name} ({differs})"
    component = (((stored.get("status") or {}).get("components") or {}).get("predictor") or {})
    canary = ((isvc.get("spec") or {}).get("predictor") or {}).get("canaryTrafficPercent")
    # KServe 0.20 splits only once a revision has rolled out to 100 %; until then the latest gets it all.
    wanted = canary if canary is not None and component.get("latestRolledoutRevision") else 100
    routed = next((t.get("percent") for t in (ksvc.get("spec") or {}).get("traffic") or [] if t.get("latestRevision")),
                  None)
    if routed != wanted:
        return f"waiting for KServe to route {wanted} % to the latest revision of Knative Service {name} (now {routed})"
    status = ksvc.get("status") or {}
    generation = int(ksvc["metadata"].get("generation") or 0)
    if int(status.get("observedGeneration") or 0) < generation:
        return (f"Knative Service {name} generation {generation} not reconciled by Knative Serving yet "
                f"(observed: {status.get('observedGeneration') or 'none'}; is Knative Serving's controller running?)")
    ready = _condition(ksvc, "Ready")
    latest, created = status.get("latestReadyRevisionName"), status.get("latestCreatedRevisionName")
    if ready.get("status") != "True" or latest != created:
        why = f": {ready.get('reason')} {ready.get('message') or ''}".rstrip() if ready.get("reason") else ""
        return f"Knative Service {name}: revision {created or '?'} not Ready (latest ready: {latest or 'none'}){why}"
    if component.get("latestReadyRevision") != latest:
        return f"waiting for KServe to report revision {latest}"
    return None


def _incluster_namespace() -> str:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as fh:
            return fh.read().strip() or "default"
    except OSError:
        return "default"


def _api_reason(exc: Any) -> str:
    import json

    body = getattr(exc, "body", None)
    try:
        return json.loads(body).get("message") or str(exc)
    except (TypeError, ValueError):
        return f"HTTP {getattr(exc, 'status', '?')} {getattr(exc, 'reason', '')}".strip()


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:200] + "…") if len(text) > 200 else (text or type(exc).__name__)
