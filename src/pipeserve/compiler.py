"""Compile the pipeline (and each component) to the YAML that Kubeflow Pipelines users upload.

``pipelines/train_and_serve.yaml`` is what the KFP UI takes (Pipelines → Upload pipeline);
``manifests/pipeline/pipeline.yaml`` the same as KFP ``Pipeline``/``PipelineVersion`` resources for
``kubectl apply``; ``components/*.yaml`` each step alone, for pipelines of your own
(``kfp.components.load_component_from_file``). :func:`normalize_compiled` makes compiled YAML
comparable across compiles, for the golden tests.

A step used twice in the pipeline (``train`` for a plain run and for the best grid candidate, the
emit step with and without a registry) is written once: KFP's compiler gives each use its own copy
of the component and its executor (``comp-train-2``, ``exec-train-2``), embedded library and all,
and :func:`share_identical_steps` points every use at one of them, as KFP's backend itself does
when it turns the spec into an Argo workflow (its templates are keyed by the container's hash).
"""

from __future__ import annotations

import io
import re
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
        if not pipeline.platform_spec.platforms:  # platform specs name executors too; none here
            shared = share_identical_steps(json_format.MessageToDict(spec))
            spec = json_format.ParseDict(shared, pipeline_spec_pb2.PipelineSpec())
        builder.write_pipeline_spec_to_file(pipeline_spec=spec, pipeline_description=pipeline.description,
                                            platform_spec=pipeline.platform_spec, package_path=str(path), **options)


def share_identical_steps(spec: dict[str, Any]) -> dict[str, Any]:
    """Point every use of a step at one copy of its component and executor (a PipelineSpec as a dict).

    KFP's compiler writes ``comp-x-2``/``exec-x-2`` for the second use of component ``x``, the
    same bytes under another name. Identical executors become one (the shortest name stays), then
    components that became identical become one, and the tasks that used the copies use it.

    Returns:
        The same spec, changed in place.
    """
    executors = spec["deploymentSpec"]["executors"]
    renamed = _merge_identical(executors)
    components = spec["components"]
    for component in components.values():
        if component.get("executorLabel") in renamed:
            component["executorLabel"] = renamed[component["executorLabel"]]
    renamed = _merge_identical(components)
    for dag in [spec["root"], *components.values()]:
        for task in dag.get("dag", {}).get("tasks", {}).values():
            ref = task["componentRef"]
            ref["name"] = renamed.get(ref["name"], ref["name"])
    return spec


def _merge_identical(entries: dict[str, Any]) -> dict[str, str]:
    """Drop entries equal to one with a shorter (then smaller) name; return ``{dropped: kept}``."""
    import json

    kept: dict[str, str] = {}
    renamed: dict[str, str] = {}
    for name in sorted(entries, key=lambda n: (len(n), n)):
        key = json.dumps(entries[name], sort_keys=True)
        if key in kept:
            renamed[name] = kept[key]
        else:
            kept[key] = name
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

    The archive's gzip header carries a timestamp, so its bytes differ on every compile; the files
    it holds do not. Comparing normalized texts therefore detects a stale library in the YAML.
    """
    import base64
    import gzip
    import hashlib
    import tarfile

    def digest(match: re.Match[str]) -> str:
        raw = gzip.decompress(base64.b64decode(match.group(1)))
        h = hashlib.sha256()
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                if member.isfile():
                    h.update(member.name.encode() + b"\0" + tar.extractfile(member).read())  # type: ignore[union-attr]
        return f"__KFP_EMBEDDED_ARCHIVE_B64 = '<files sha256 {h.hexdigest()}>'"

    return _ARCHIVE.sub(digest, text)
