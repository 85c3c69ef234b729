"""Planning a rollout: everything read and checked before the cluster is touched (see :mod:`pipeserve.rollout`).

The version's card (downloaded and verified), its storage URI, the serving setup read back from
the InferenceService it replaces with the options given on top, the canary checks, and the rendered
documents.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeserve.errors import ConfigError
from pipeserve.kube import kserve
from pipeserve.kube.readback import Served, merge_options, read_served

if TYPE_CHECKING:
    from pipeserve.kube.client import Cluster
    from pipeserve.kube.render import Rendered, S3Credentials
    from pipeserve.registry.mlflow_registry import MlflowRegistry

Progress = Callable[[str], None]
UNREAD: Any = object()


@dataclass(frozen=True)
class RolloutOptions:
    """Where and how to roll out.

    Args:
        namespace: Namespace of the InferenceService.
        name: InferenceService name (default: the registered model's name).
        spec_options: :class:`~pipeserve.kube.spec.DeploymentSpec` options to change (``target``,
            ``mode``, ``min_replicas``, ...); the rest is read back from the served InferenceService,
            or is the default when none is served.
        canary_percent: Knative mode: percent of traffic for the new version (0-99); the alias stays.
        storage_uri: Where the cluster fetches the version from, instead of ``registry.storage_uri``.
        wait: Wait until rolled out and Ready before moving the alias (False: move it after the apply,
            and nothing rolls back by itself).
        timeout_s: How long to wait for the rollout, and again for a rollback.
        smoke: ``(base_url, model, n_features) -> outputs`` after Ready; None skips it.
        smoke_url: Base URL for the smoke inference instead of ``status.url``.
        force_conflicts: Take over fields another field manager owns.
        s3: Also apply this S3 credentials Secret + ServiceAccount (the predictor runs as it).
    """

    namespace: str
    name: str | None = None
    spec_options: Mapping[str, Any] = field(default_factory=dict)
    canary_percent: int | None = None
    storage_uri: str | None = None
    wait: bool = True
    timeout_s: float = 600
    smoke: Callable[[str, str, int], dict[str, Any]] | None = None
    smoke_url: str | None = None
    force_conflicts: bool = False
    s3: S3Credentials | None = None


@dataclass(frozen=True)
class Plan:
    """What a rollout will do, read and checked before the cluster is touched."""

    name: str
    version: str
    isvc_name: str
    namespace: str
    rendered: Rendered | None
    live: dict[str, Any] | None
    served: Served | None

    @property
    def previous(self) -> str | None:
        """The version the previous spec served (what a restore brings back)."""
        return self.served.model_version if self.served else None


# ---- planning: everything read and checked before the cluster is touched ---------------------


def plan(registry: MlflowRegistry, cluster: Cluster, name: str, version: str, options: RolloutOptions,
          progress: Progress, live: Any = UNREAD) -> Plan:
    from pipeserve.kube.render import render_documents
    from pipeserve.registry import ModelRef

    namespace, isvc_name = options.namespace, options.name or name
    if live is UNREAD:
        live = cluster.get(kserve.API_VERSION, kserve.KIND, isvc_name, namespace)
    served = read_served(live) if live else None
    if served is not None and served.model_name not in (None, name):
        raise ConfigError(f"InferenceService {namespace}/{isvc_name} serves model {served.model_name!r}, not "
                          f"{name!r}; pass --name for {name}'s own InferenceService.")
    spec = _spec(served, options, isvc_name)
    _check_canary(spec, served, options, version)
    ref = ModelRef(name, version=version)
    card = _card(registry, ref)
    storage_uri = options.storage_uri or registry.storage_uri(ref)
    rendered = render_documents(card, storage_uri, spec, options.s3)
    for note in rendered.warnings:
        progress(f"warning: {note}")
    setup = ", ".join(f"{k} {getattr(rendered.spec, k)}" for k in ("mode", "target", "autoscaler"))
    progress(f"{name}/{version} from {storage_uri} into {namespace}/{isvc_name} ({setup}"
             f"{'' if served is None else ', the rest as served'})")
    return Plan(name, version, isvc_name, namespace, rendered, live, served)


def _spec(served: Served | None, options: RolloutOptions, isvc_name: str) -> Any:
    from pipeserve.kube.spec import DeploymentSpec

    explicit = {k: v for k, v in options.spec_options.items()
                if v is not None and k not in ("name", "namespace", "canary_traffic_percent")}
    if served is not None and explicit.get("mode", served.mode) != served.mode:
        raise ConfigError(
            f"InferenceService {served.namespace}/{served.name} runs in {served.mode} mode and KServe cannot change "
            "the deployment mode of an existing InferenceService; drop --mode, or roll out under another --name.")
    mode = explicit.get("mode") or (served.mode if served else kserve.STANDARD)
    if options.canary_percent is not None and mode != kserve.KNATIVE:
        raise ConfigError(
            f"--canary needs Knative mode, and InferenceService {options.namespace}/{isvc_name} is in Standard mode"
            f"{'' if served else ' (the default)'}: there KServe ignores canaryTrafficPercent, and spec.canary (0.20) "
            "starts the new version beside the old one but gives it no traffic without the Gateway API; promote "
            "without --canary (a rolling update that rolls back by itself if it never gets Ready), or canary on a "
            "Knative-mode InferenceService (--mode Knative --name NEW).")
    merged = merge_options(served.options if served else {}, explicit)
    merged.update(name=isvc_name, namespace=options.namespace, canary_traffic_percent=options.canary_percent)
    return DeploymentSpec.from_options(**merged)


def _check_canary(spec: Any, served: Served | None, options: RolloutOptions, version: str) -> None:
    percent = options.canary_percent
    if percent is None:
        return
    where = f"{options.namespace}/{options.name or spec.name}"
    if not 0 <= percent <= 99:
        raise ConfigError(f"--canary is the percent of traffic for the new version, 0-99; got {percent}. "
                          "Promote without --canary to send it all traffic.")
    if served is None or not served.rolled_out_revision:
        raise ConfigError(
            f"--canary splits traffic between the new revision and the one serving now, but {where} has no revision "
            "rolled out to 100 % yet (KServe would send all traffic to the new one); promote without --canary first.")
    if served.model_version == version and not served.in_canary:
        raise ConfigError(f"{where} already serves version {version} to all traffic; there is nothing to canary.")


def _card(registry: MlflowRegistry, ref: Any) -> Any:
    """The version's model card, from its artifacts (downloaded and verified against the registry)."""
    from pipeserve.modelcard import read_card

    with tempfile.TemporaryDirectory(prefix="pipeserve-rollout-") as tmp:
        return read_card(registry.download(ref, Path(tmp)))


