"""The one module of pipeserve that talks to a Kubernetes cluster.

Everything else under :mod:`pipeserve.kube` is pure. Here: server-side apply through the
kubernetes dynamic client, readiness through kserve's ``KServeClient``, a v2 smoke inference,
and delete (for the cluster test). Every failure to reach or convince the cluster becomes a
:class:`~pipeserve.errors.ClusterError` with one line saying what happened and what to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeserve.errors import ClusterError

FIELD_MANAGER = "pipeserve"


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
        self._namespace: str = "default"
        self._kubeconfig: str | None = None  # None: in-cluster credentials

    def connect(self) -> Cluster:
        """Load credentials and check that the API server answers.

        Raises:
            ClusterError: no kubeconfig, unknown context, or the API server is unreachable.
        """
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        import os

        kubeconfig = self.kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        try:
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
            if self.context:
                active = next((c for c in contexts if c["name"] == self.context), None)
                if active is None:
                    names = ", ".join(c["name"] for c in contexts)
                    raise ClusterError(f"No context {self.context!r} in the kubeconfig; it has: {names}.")
            config.load_kube_config(config_file=kubeconfig, context=self.context)
            self._kubeconfig = kubeconfig
            self._namespace = active.get("context", {}).get("namespace") or "default"
        except (ConfigException, FileNotFoundError) as exc:
            try:
                config.load_incluster_config()
            except ConfigException:
                raise ClusterError(
                    "No Kubernetes cluster configured: no kubeconfig (KUBECONFIG or ~/.kube/config) and not running "
                    "in a pod. Point KUBECONFIG at a cluster with KServe 0.21, or use --dry-run to print the manifests."
                ) from exc
            self._namespace = _incluster_namespace()
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

    def apply(self, docs: Iterable[Mapping[str, Any]], force_conflicts: bool = False) -> list[str]:
        """Server-side apply each document (field manager ``pipeserve``); return ``Kind/name`` applied."""
        from kubernetes import dynamic
        from kubernetes.client.exceptions import ApiException
        from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError

        dyn = dynamic.DynamicClient(self._require())
        done = []
        for doc in docs:
            kind, name = doc["kind"], doc["metadata"]["name"]
            try:
                resource = dyn.resources.get(api_version=doc["apiVersion"], kind=kind)
                namespace = (doc["metadata"].get("namespace") or self.namespace) if resource.namespaced else None
                dyn.server_side_apply(
                    resource, body=dict(doc), name=name, namespace=namespace,
                    field_manager=FIELD_MANAGER, force_conflicts=force_conflicts,
                )
            except ResourceNotFoundError as exc:
                raise ClusterError(
                    f"The cluster does not know {doc['apiVersion']} {kind}; install KServe 0.21 (its CRDs) first."
                ) from exc
            except (ApiException, DynamicApiError) as exc:
                raise ClusterError(f"The cluster refused {kind}/{name}: {_api_reason(exc)}") from exc
            done.append(f"{kind}/{name}")
        return done

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
        kserve = self._kserve()
        namespace = namespace or self.namespace
        deadline = time.monotonic() + timeout_s
        last = ""
        state = Readiness(False, None, {})
        while True:
            try:
                obj = kserve.get(name, namespace=namespace)
            except RuntimeError as exc:  # KServeClient wraps ApiException in RuntimeError
                raise ClusterError(f"Cannot read InferenceService {namespace}/{name}: {_short(exc)}") from exc
            status = obj.get("status") or {}
            conditions = {
                c["type"]: c.get("status", "Unknown") + (f" ({c['reason']})" if c.get("reason") else "")
                for c in status.get("conditions") or []
            }
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
            state = Readiness(ready, status.get("url"), conditions)
            summary = ", ".join(f"{k}={v}" for k, v in sorted(conditions.items())) or "no status yet"
            if progress and summary != last:
                progress(summary)
                last = summary
            if ready:
                return state
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"InferenceService {namespace}/{name} not Ready after {timeout_s:.0f}s ({summary}); "
                    f"see `kubectl describe inferenceservice {name} -n {namespace}` and the predictor pod's events."
                )
            time.sleep(poll_s)

    def delete_inference_service(self, name: str, namespace: str | None = None) -> None:
        """Delete an InferenceService (used by the cluster test's clean-up)."""
        try:
            self._kserve().delete(name, namespace or self.namespace)
        except RuntimeError as exc:  # KServeClient wraps ApiException in RuntimeError
            raise ClusterError(f"Cannot delete InferenceService {name}: {_short(exc)}") from exc

    def _kserve(self) -> Any:
        from pipeserve._protos import share_inference_protos

        share_inference_protos()  # kserve and tritonclient.grpc in one process
        from kserve import KServeClient

        self._require()
        # KServeClient (re)loads credentials itself: give it the same kubeconfig and context, or
        # it would fall back to the default context.
        if self._kubeconfig is None:
            return KServeClient()
        return KServeClient(config_file=self._kubeconfig, context=self.context)

    def _require(self) -> Any:
        if self._api_client is None:
            self.connect()
        return self._api_client


def smoke_infer(base_url: str, model_name: str, n_features: int, timeout_s: float = 30) -> dict[str, list[Any]]:
    """Send one all-zeros FP32 row to ``/v2/models/<model_name>/infer``; return each output's values.

    Uses :class:`pipeserve.client.Predictor` (REST v2; it speaks to Triton, KServe's servers and
    the pipeserve runtime alike).

    Raises:
        ClusterError: the endpoint is unreachable or the inference failed.
    """
    import numpy as np

    from pipeserve.client import Predictor
    from pipeserve.errors import PipeserveError

    try:
        with Predictor(base_url, model=model_name, timeout=timeout_s) as predictor:
            outputs = predictor.infer(np.zeros((1, n_features), dtype=np.float32))
    except PipeserveError as exc:
        raise ClusterError(f"Smoke inference on {base_url}/v2/models/{model_name}/infer failed: {exc}") from exc
    return {name: np.asarray(values).tolist() for name, values in outputs.items()}


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
