"""Compile the pipeline (and each component) to the YAML that Kubeflow Pipelines users upload.

``pipelines/train_and_serve.yaml`` is what the KFP UI takes (Pipelines → Upload pipeline);
``manifests/pipeline/pipeline.yaml`` the same as KFP ``Pipeline``/``PipelineVersion`` resources for
``kubectl apply``; ``components/*.yaml`` each step alone, for pipelines of your own
(``kfp.components.load_component_from_file``). :func:`normalize_compiled` makes compiled YAML
comparable across compiles, for the golden tests.

A step used twice in the pipeline (``train`` for a plain run and for the best grid candidate, the
emit step three times, deploy twice) is written once: KFP's compiler gives each use its own copy
of the component and its executor (``comp-train-2``, ``exec-train-2``), pins and all, and
:func:`share_identical_steps` points every use at one of them, as KFP's backend itself does when
it turns the spec into an Argo workflow (its templates are keyed by the container's hash). The
platform document (kfp-kubernetes: the training steps' node selector and tolerations) names
executors too; it is kept in step.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeserve.components.runtime import ComponentRuntime

_ARCHIVE = re.compile(r"__KFP_EMBEDDED_ARCHIVE_B64 = '([A-Za-z0-9+/=]+)'")


def compile_pipeline(package_path: Path, kubernetes_manifest_path: Path | None = None,
                     runtime: ComponentRuntime | None = None) -> list[Path]:
    """Compile train_and_serve to the YAML users upload in the KFP UI, and optionally as KFP
    ``Pipeline``/``PipelineVersion`` resources for ``kubectl apply``.

    Args:
        package_path: The pipeline YAML to write.
        kubernetes_manifest_path: Where to write the Kubernetes resources; None for none.
        runtime: What the steps run on (default: the stock image, pinned packages, embedded library).

    Returns:
        The files written.
    """
    from kfp.compiler.compiler_utils import KubernetesManifestOptions

    from pipeserve.components import build_components
    from pipeserve.pipelines.train_and_serve import PIPELINE_NAME, train_and_serve_pipeline

    pipeline = train_and_serve_pipeline(build_components(runtime))
    written = []
    package_path.parent.mkdir(parents=True, exist_ok=True)
    _write(pipeline, package_path)
    written.append(package_path)
    if kubernetes_manifest_path is not None:
        kubernetes_manifest_path.parent.mkdir(parents=True, exist_ok=True)
        _write(
            pipeline,
            kubernetes_manifest_path,
            kubernetes_manifest_format=True,
            kubernetes_manifest_options=KubernetesManifestOptions(
                pipeline_name=PIPELINE_NAME,
                pipeline_version_name=f"{PIPELINE_NAME}-v{_package_version()}",
                include_pipeline_manifest=True,
            ),
        )
        written.append(kubernetes_manifest_path)
    return written


def _write(pipeline: Any, path: Path, **options: Any) -> None:
    """What ``kfp.compiler.Compiler().compile`` does, with :func:`share_identical_steps` applied first."""
    from google.protobuf import json_format
    from kfp.compiler import pipeline_spec_builder as builder
    from kfp.dsl.types import type_utils
    from kfp.pipeline_spec import pipeline_spec_pb2

    with type_utils.TypeCheckManager(enable=True):
        spec = builder.modify_pipeline_spec_with_override(pipeline_spec=pipeline.pipeline_spec, pipeline_name=None,
                                                          pipeline_parameters=None, pipeline_display_name=None)
        platform = json_format.MessageToDict(pipeline.platform_spec)
        shared = share_identical_steps(json_format.MessageToDict(spec), platform)
        spec = json_format.ParseDict(shared, pipeline_spec_pb2.PipelineSpec())
        platform_spec = json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
        builder.write_pipeline_spec_to_file(pipeline_spec=spec, pipeline_description=pipeline.description,
                                            platform_spec=platform_spec, package_path=str(path), **options)


def share_identical_steps(spec: dict[str, Any], platform: dict[str, Any] | None = None) -> dict[str, Any]:
    """Point every use of a step at one copy of its component and executor (a PipelineSpec as a dict).

    KFP's compiler writes ``comp-x-2``/``exec-x-2`` for the second use of component ``x``, the
    same bytes under another name. Identical executors become one (the shortest name stays), then
    components that became identical become one, and the tasks that used the copies use it.

    Args:
        spec: The PipelineSpec, as a dict.
        platform: Its PlatformSpec as a dict (kfp-kubernetes' node selectors, tolerations, ...),
            which configures executors by name: executors are identical only when their platform
            configuration is too, and the dropped ones' entries go.

    Returns:
        ``spec``, changed in place (and ``platform`` too).
    """
    import json

    platform_executors = [p.get("deploymentSpec", {}).get("executors", {})
                          for p in (platform or {}).get("platforms", {}).values()]
    executors = spec["deploymentSpec"]["executors"]
    renamed = _merge_identical(executors, lambda name: json.dumps(
        [executors[name], [configs.get(name) for configs in platform_executors]], sort_keys=True))
    for configs in platform_executors:
        for name in renamed:
            configs.pop(name, None)
    components = spec["components"]
    for component in components.values():
        if component.get("executorLabel") in renamed:
            component["executorLabel"] = renamed[component["executorLabel"]]
    renamed = _merge_identical(components, lambda name: json.dumps(components[name], sort_keys=True))
    for dag in [spec["root"], *components.values()]:
        for task in dag.get("dag", {}).get("tasks", {}).values():
            ref = task["componentRef"]
            ref["name"] = renamed.get(ref["name"], ref["name"])
    return spec


def _merge_identical(entries: dict[str, Any], key: Callable[[str], str]) -> dict[str, str]:
    """Drop entries whose ``key`` equals one with a shorter (then smaller) name; return ``{dropped: kept}``."""
    kept: dict[str, str] = {}
    renamed: dict[str, str] = {}
    for name in sorted(entries, key=lambda n: (len(n), n)):
        identity = key(name)
        if identity in kept:
            renamed[name] = kept[identity]
        else:
            kept[identity] = name
    for name in renamed:
        del entries[name]
    return renamed


def compile_components(directory: Path, runtime: ComponentRuntime | None = None) -> list[Path]:
    """Write each component alone, as ``<directory>/<function name>.yaml``.

    Args:
        directory: Folder for the component specs (created if missing).
        runtime: What the steps run on (default: the stock image, pinned packages, embedded library).

    Returns:
        The files written, in pipeline order.
    """
    from kfp import compiler

    from pipeserve.components import build_components

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, component in build_components(runtime)._asdict().items():
        path = directory / f"{name}.yaml"
        compiler.Compiler().compile(component, str(path))
        written.append(path)
    return written


def _package_version() -> str:
    import pipeserve

    return pipeserve.__version__.replace(".", "-")


def normalize_compiled(text: str) -> str:
    """Replace each embedded archive by a digest of the files inside it.

    KFP gzips what a component embeds with a timestamp in the gzip header, so its bytes differ on
    every compile; the files it holds do not. The library's own archive (``pipeserve.tar.xz``,
    inside KFP's) is opened too, and its files digested, so compressors of other versions give
    the same digest. Comparing normalized texts therefore detects a stale library in the YAML.
    """
    import base64
    import gzip
    import hashlib
    import tarfile

    def update(h: Any, tar: tarfile.TarFile) -> None:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if not member.isfile():
                continue
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            if member.name.endswith(".tar.xz"):
                with tarfile.open(fileobj=io.BytesIO(data), mode="r:xz") as inner:
                    update(h, inner)
            else:
                h.update(member.name.encode() + b"\0" + data)

    def digest(match: re.Match[str]) -> str:
        h = hashlib.sha256()
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(base64.b64decode(match.group(1))))) as tar:
            update(h, tar)
        return f"__KFP_EMBEDDED_ARCHIVE_B64 = '<files sha256 {h.hexdigest()}>'"

    return _ARCHIVE.sub(digest, text)
