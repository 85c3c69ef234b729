"""Kubeflow Pipelines components: thin wrappers over the pipeserve library.

Each component runs on a pinned stock Python image with pinned packages and the pipeserve package
embedded (``embedded_artifact_path``), so no custom image is needed.
"""

from pipeserve.components.data import load_data
from pipeserve.components.emit import emit_inference_service
from pipeserve.components.evaluate import evaluate
from pipeserve.components.package import package
from pipeserve.components.train import train

__all__ = ["emit_inference_service", "evaluate", "load_data", "package", "train"]
