"""Compile the pipeline (and each component) to the YAML that Kubeflow Pipelines users upload.

``pipelines/train_and_serve.yaml`` is what the KFP UI takes (Pipelines → Upload pipeline);
``manifests/pipeline/pipeline.yaml`` the same as KFP ``Pipeline``/``PipelineVersion`` resources for
``kubectl apply``; ``components/*.yaml`` each step alone, for pipelines of your own
(``kfp.components.load_component_from_file``). :func:`normalize_compiled` makes compiled YAML
comparable across compiles, for the golden tests.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

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
    from kfp import compiler
    from kfp.compiler.compiler_utils import KubernetesManifestOptions

    from pipeserve.components import build_components
    from pipeserve.pipelines.train_and_serve import PIPELINE_NAME, train_and_serve_pipeline

    pipeline = train_and_serve_pipeline(build_components(runtime))
    written = []
    package_path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline, str(package_path))
    written.append(package_path)
    if kubernetes_manifest_path is not None:
        kubernetes_manifest_path.parent.mkdir(parents=True, exist_ok=True)
        compiler.Compiler().compile(
            pipeline,
            str(kubernetes_manifest_path),
            kubernetes_manifest_format=True,
            kubernetes_manifest_options=KubernetesManifestOptions(
                pipeline_name=PIPELINE_NAME,
                pipeline_version_name=f"{PIPELINE_NAME}-v{_package_version()}",
                include_pipeline_manifest=True,
            ),
        )
        written.append(kubernetes_manifest_path)
    return written


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
