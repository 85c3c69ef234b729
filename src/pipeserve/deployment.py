"""The pipeline's deploy step, as a library: the same code paths as `pipeserve deploy` and `models promote`.

:func:`deploy_version` rolls a registered version out with :func:`pipeserve.rollout.promote` (serve it,
wait until it is rolled out and Ready, smoke-test it, then move the champion alias; roll back to the
previous champion when it never becomes Ready). :func:`deploy_model` deploys a packaged model without
a registry through :func:`pipeserve.kube.deploy.deploy`. Both say what happened as an :class:`Outcome`:
one line for the step's output, Markdown for the KFP UI, metadata for the artifact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Outcome:
    """What a deploy step did."""

    summary: str
    markdown: str
    metadata: dict[str, Any] = field(default_factory=dict)


def deploy_version(registry_uri: str, name: str, version: str, *, namespace: str, expected: str | None,
                   options: Mapping[str, Any], storage_uri: str | None = None, smoke: bool = True,
                   timeout_s: float = 600, registry_artifacts: str | None = None, reason: str = "") -> Outcome:
    """Roll ``name/version`` out on the current cluster, then make it the champion.

    Args:
        registry_uri: The MLflow registry.
        name: Registered model name.
        version: The version to serve.
        namespace: Namespace of the InferenceService ("" for the current one).
        expected: The champion the gate compared against (None: none); the alias move is
            compare-and-set against it.
        options: DeploymentSpec options (target, replicas, runtime_version, ...).
        storage_uri: Where KServe fetches the version, instead of the registry's location.
        smoke: Send one v2 inference once Ready.
        timeout_s: How long to wait for the rollout (and again for a rollback).
        registry_artifacts: The MLflow server's artifacts destination.
        reason: Recorded with the alias move.

    Raises:
        RolloutFailed: it never became Ready (the InferenceService is back on the previous champion).
        ConflictError: the champion moved since the gate read it; nothing was deployed.
    """
    from pipeserve.kube.client import Cluster
    from pipeserve.registry import open_registry
    from pipeserve.rollout import RolloutOptions, promote
    from pipeserve.smoke import smoke_infer

    cluster = Cluster().connect()
    where = RolloutOptions(namespace=namespace or cluster.namespace, storage_uri=storage_uri, timeout_s=timeout_s,
                           spec_options={k: v for k, v in options.items() if v not in (None, "")},
                           smoke=smoke_infer if smoke else None)
    registry = open_registry(registry_uri, artifacts_destination=registry_artifacts)
    lines: list[str] = []
    rollout = promote(registry, cluster, name, version, where, expected=expected, reason=reason,
                      progress=lines.append)
    served = f"{rollout.namespace}/{rollout.inference_service} serves {name}/{version}"
    summary = f"{served} ({rollout.mode} mode); champion {rollout.previous or 'unset'} -> {version}"
    markdown = "\n".join([
        f"# Deployed {name} v{version}", "",
        "| | |", "|---|---|",
        f"| InferenceService | `{rollout.namespace}/{rollout.inference_service}` ({rollout.mode} mode) |",
        f"| previous champion | {rollout.previous or 'none'} |",
        f"| rolled out and Ready | {_seconds(rollout.seconds)} after the apply |",
        f"| inference URL | {rollout.url or 'none reported'} |",
        f"| smoke inference | {rollout.smoke if rollout.smoke is not None else 'skipped'} |",
        "", "Steps:", "", *(f"- {line}" for line in lines), "",
    ])
    return Outcome(summary, markdown, {"namespace": rollout.namespace, "inference_service": rollout.inference_service,
                                       "model_version": version, "previous": rollout.previous or "",
                                       "url": rollout.url or ""})


def deploy_model(model_repository: Path, name: str, artifact_uri: str, *, namespace: str,
                 options: Mapping[str, Any], storage_uri: str | None = None, smoke: bool = True,
                 timeout_s: float = 600) -> Outcome:
    """Deploy the packaged model in ``model_repository/<name>`` as `pipeserve deploy` does.

    Raises:
        ClusterError: no cluster, a failed preflight check, or not Ready in time (with the reason).
        ManifestRejected: the API server or a webhook refused the manifest.
    """
    from pipeserve.kube.client import Cluster
    from pipeserve.kube.deploy import deploy
    from pipeserve.kube.render import render_documents, select_model
    from pipeserve.kube.spec import DeploymentSpec
    from pipeserve.smoke import smoke_infer
    from pipeserve.storage import storage_uri_for

    cluster = Cluster().connect()
    _, card = select_model(model_repository / name)
    spec = DeploymentSpec.from_options(namespace=namespace or cluster.namespace, **dict(options))
    rendered = render_documents(card, storage_uri or storage_uri_for(artifact_uri), spec)
    lines: list[str] = []
    done = deploy(cluster, rendered, timeout_s=timeout_s, smoke=smoke_infer if smoke else None,
                  progress=lines.append)
    summary = f"{done.namespace}/{done.name} serves {name}/{card.version} (generation {done.generation})"
    markdown = "\n".join([f"# Deployed {name} v{card.version}", "", f"`{done.namespace}/{done.name}`, "
                          f"{'changed' if done.changed else 'unchanged'}; inference URL {done.url or 'none reported'}; "
                          f"smoke {done.smoke if done.smoke is not None else 'skipped'}", "", "Steps:", "",
                          *(f"- {line}" for line in lines), ""])
    return Outcome(summary, markdown, {"namespace": done.namespace, "inference_service": done.name,
                                       "model_version": card.version, "url": done.url or ""})


def _seconds(value: float | None) -> str:
    return "not waited for" if value is None else f"{value:.1f} s"
