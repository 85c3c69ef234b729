"""The pipeserve pipeline: load → train → evaluate → package → emit an InferenceService.

:func:`train_and_serve_pipeline` wires the five steps for a given build of the components (stock
image, prebuilt image, or kfp.local); ``train_and_serve`` is the pipeline as compiled into
``pipelines/train_and_serve.yaml``, built on first use.
"""

import functools
from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Model

from pipeserve.components import Components, build_components

PIPELINE_NAME = "train-and-serve"
DESCRIPTION = ("Train a scikit-learn model, evaluate it, package it as ONNX (Triton layout) + skops "
               "with a parity check, and emit the KServe InferenceService that serves it.")


def train_and_serve_pipeline(steps: Components) -> Any:
    """The train_and_serve pipeline (a KFP ``GraphComponent``) over ``steps``.

    Args:
        steps: The components, from :func:`pipeserve.components.build_components`.
    """

    @dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)
    def train_and_serve(
        source: str = "iris",
        target: str = "",
        task: str = "",
        estimator: str = "",
        params_json: str = "{}",
        model_name: str = "iris",
        model_version: str = "1",
        test_size: float = 0.2,
        random_state: int = 42,
        serving_target: str = "triton-gpu",
        runtime_version: str = "",
        namespace: str = "",
        min_replicas: int = 1,
        max_replicas: int = 3,
        storage_uri: str = "",
        triton_max_batch_size: int = 0,
        source_revision: str = "",
    ) -> NamedTuple("Outputs", [("packaged_model", Model), ("inference_service", Artifact)]):
        """Train and package a model and emit its InferenceService.

        Args:
            source: Built-in dataset (iris, breast_cancer, wine, digits, diabetes), a path or an fsspec URL.
            target: Target column (files only).
            task: classification or regression; empty to infer it.
            estimator: Catalogue estimator; empty for the task's default.
            params_json: Hyperparameters as a JSON object.
            model_name: Model name (Triton folder and v2 model name).
            model_version: Model version (positive integer).
            test_size: Fraction held out for evaluation and the parity check.
            random_state: Seed of the split.
            serving_target: triton-gpu, triton-cpu or pipeserve.
            runtime_version: Image tag of the serving runtime (e.g. Triton 24.08-py3); empty for what
                stock KServe 0.21 runs. The ONNX file is converted for that image's ONNX Runtime.
            namespace: Namespace of the InferenceService.
            min_replicas: Minimum replicas.
            max_replicas: Maximum replicas.
            storage_uri: storageUri override; empty to use the packaged model's artifact URI.
            triton_max_batch_size: Triton max_batch_size (0: no Triton batching).
            source_revision: Source revision of the training code, recorded as lineage.
        """
        data_task = steps.load_data(source=source, target=target, task=task, test_size=test_size,
                                    random_state=random_state)
        train_task = steps.train(train_data=data_task.outputs["train_data"], estimator=estimator,
                                 params_json=params_json)
        evaluate_task = steps.evaluate(model=train_task.outputs["model"], train_data=data_task.outputs["train_data"],
                                       test_data=data_task.outputs["test_data"], model_name=model_name)
        package_task = steps.package(
            model=train_task.outputs["model"],
            train_data=data_task.outputs["train_data"],
            test_data=data_task.outputs["test_data"],
            metrics_json=evaluate_task.outputs["Output"],
            model_name=model_name,
            model_version=model_version,
            triton_max_batch_size=triton_max_batch_size,
            pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            source_revision=source_revision,
            serving_target=serving_target,
            runtime_version=runtime_version,
        )
        emit_task = steps.emit_inference_service(
            packaged_model=package_task.outputs["packaged_model"],
            model_name=model_name,
            target=serving_target,
            namespace=namespace,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            storage_uri=storage_uri,
            runtime_version=runtime_version,
        )
        from collections import namedtuple

        outputs = namedtuple("Outputs", ["packaged_model", "inference_service"])
        return outputs(package_task.outputs["packaged_model"], emit_task.outputs["manifest"])

    return train_and_serve


@functools.cache
def _stock() -> Any:
    return train_and_serve_pipeline(build_components())


def __getattr__(name: str) -> Any:
    if name == "train_and_serve":
        return _stock()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
