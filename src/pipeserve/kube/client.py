"""The one module of pipeserve that talks to a Kubernetes cluster.

Everything else under :mod:`pipeserve.kube` is pure. Here, all through the kubernetes dynamic
client: server-side apply, get, a watch until the InferenceService is Ready, and delete; plus a v2
smoke inference. Every failure to reach or convince the cluster becomes a
:class:`~pipeserve.errors.ClusterError` with one line saying what happened and what to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pipeserve.errors import ClusterError, UserError
from pipeserve.kube import kserve
from pipeserve.kube.rollout_status import (  # noqa: F401  (Readiness re-exported)
    DEADLINE_EXCEEDED,
    Readiness,
    deployment_pending,
    knative_pending,
    mode_of,
    readiness,
)

FIELD_MANAGER = "pipeserve"


class ManifestRejected(UserError):
    """The API server or an admission webhook refused a manifest (exit 2: the manifest must change)."""


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
            state = readiness(obj)
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
        knative = mode_of(isvc) == kserve.KNATIVE
        deadline = time.monotonic() + timeout_s
        last = ""
        blind = False
        pause = 0.05
        while True:
            obj = self.get_inference_service(name, namespace)
            state = readiness(obj)
            pending = None
            if not blind:
                kind = kserve.KNATIVE_SERVICE if knative else ("apps/v1", "Deployment")
                try:
                    workload = self.get(*kind, f"{name}-predictor", namespace)
                except ClusterError as exc:  # e.g. a pipeline identity that may not read Deployments
                    blind = True
                    if progress:
                        progress(f"{str(exc).rstrip('.')}; waiting for the InferenceService's Ready condition "
                                 "only, which KServe may report before the new pods run")
                else:
                    pending = knative_pending(isvc, workload, obj) if knative else deployment_pending(isvc, workload)
            if pending is None and not state.ready:
                pending = "InferenceService " + (", ".join(f"{k}={v}" for k, v in sorted(state.conditions.items()))
                                                 or "has no status yet")
            summary = pending or "rolled out, Ready"
            if progress and summary != last:
                progress(summary)
                last = summary
            if pending is None:
                return state
            if pending.startswith(DEADLINE_EXCEEDED):
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


def _where(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


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
