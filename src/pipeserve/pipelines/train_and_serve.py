"""The pipeserve pipeline: load → train (or search a grid) → evaluate → package → register, gate,
promote → emit an InferenceService.

:func:`train_and_serve_pipeline` wires the steps for a given build of the components (stock image,
prebuilt image, or kfp.local); ``train_and_serve`` is the pipeline as compiled into
``pipelines/train_and_serve.yaml``, built on first use.

The DAG::

    load-data ─┬─ param_grid_json == "": train
               └─ else: plan-grid → ParallelFor(score-candidate) → select-candidate → train (the best)
    evaluate → package (the model from whichever branch ran: dsl.OneOf)
    ─┬─ registry == "": emit-inference-service (as without a registry) [→ deploy, when deploy]
     └─ else: register (alias challenger; reads the champion) → gate ─ decision == promote:
              ─┬─ not deploy: promote (compare-and-set against that champion) → emit-inference-service
               └─ deploy: deploy (roll the version out, wait Ready, smoke; then the alias moves,
                          compare-and-set; never Ready: rolled back) → emit-inference-service

Without a grid the fan-out steps do not run (nor are scheduled), and without a registry neither
are the registry steps: the run is the five steps it always was. Every step after load-data also
takes its ``library`` output: the pipeserve modules the steps import, carried by load-data alone.
"""

import functools
from typing import Any, NamedTuple

from kfp import dsl, kubernetes
from kfp.dsl import Model

from pipeserve.components import Components, build_components

PIPELINE_NAME = "train-and-serve"
DESCRIPTION = ("Train a scikit-learn model (optionally the best of a cross-validated hyperparameter grid), "
               "evaluate it, package it as ONNX (Triton layout) + skops with a parity check, register it and "
               "gate it against the champion, and emit the KServe InferenceService that serves it.")
# At most this many candidates are scored at once (KFP: iteratorPolicy.parallelismLimit).
GRID_PARALLELISM = 4


def _sized(task: Any, cpu_request: Any, cpu_limit: Any, memory_request: Any, memory_limit: Any,
           node_selector: Any, tolerations: Any, on_cluster: bool) -> Any:
    """Give a training task the resources (and node pool) the run asks for, like SageMaker's instance_type."""
    if not on_cluster:
        return task
    task.set_cpu_request(cpu_request).set_cpu_limit(cpu_limit)
    task.set_memory_request(memory_request).set_memory_limit(memory_limit)
    kubernetes.add_node_selector_json(task, node_selector)
    kubernetes.add_toleration_json(task, tolerations)
    return task


def train_and_serve_pipeline(steps: Components, grid_parallelism: int = GRID_PARALLELISM,
                             on_cluster: bool = True) -> Any:
    """The train_and_serve pipeline (a KFP ``GraphComponent``) over ``steps``.

    Args:
        steps: The components, from :func:`pipeserve.components.build_components`.
        grid_parallelism: How many grid candidates are scored at once.
        on_cluster: Size and place the training pods from the train_* parameters. kfp.local runs every
            step on this machine (and cannot resolve resource placeholders), so it passes False.
    """

    @dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)
    def train_and_serve(
        source: str = "iris",
        target: str = "",
        task: str = "",
        estimator: str = "",
        params_json: str = "{}",
        param_grid_json: str = "",
        cv_folds: int = 5,
        model_name: str = "iris",
        model_version: str = "1",
        test_size: float = 0.2,
        random_state: int = 42,
        registry: str = "",
        registry_artifacts: str = "",
        gate_rule: str = "default",
        serving_name: str = "",
        serving_namespace: str = "",
        serving_target: str = "triton-gpu",
        runtime_version: str = "",
        namespace: str = "",
        min_replicas: int = 1,
        max_replicas: int = 3,
        storage_uri: str = "",
        triton_max_batch_size: int = 0,
        source_revision: str = "",
        deploy: bool = False,
        smoke: bool = True,
        deploy_timeout_seconds: int = 600,
        train_cpu_request: str = "1",
        train_cpu_limit: str = "2",
        train_memory_request: str = "2Gi",
        train_memory_limit: str = "4Gi",
        train_node_selector: dict = {},  # noqa: B006 - KFP reads defaults; never mutated
        train_tolerations: list = [],  # noqa: B006
    ) -> NamedTuple("Outputs", [("packaged_model", Model)]):
        """Train and package a model, register and gate it, and emit its InferenceService.

        Args:
            source: Built-in dataset (iris, breast_cancer, wine, digits, diabetes), a path or an fsspec URL.
            target: Target column (files only).
            task: classification or regression; empty to infer it.
            estimator: Catalogue estimator; empty for the task's default.
            params_json: Hyperparameters as a JSON object.
            param_grid_json: Hyperparameter grid, e.g. {"C": [0.01, 0.1, 1], "max_iter": [100, 200]}: every
                combination is scored by cross-validation on the training split, and the best is trained.
                Empty: no search.
            cv_folds: Cross-validation folds per grid candidate.
            model_name: Model name (Triton folder, v2 model name, registered model).
            model_version: Model version without a registry (positive integer); a registry numbers versions itself.
            test_size: Fraction held out for evaluation and the parity check.
            random_state: Seed of the split and of the cross-validation folds.
            registry: MLflow registry to register the model in (an MLflow tracking server, http(s)://host:port);
                empty: no registry, no gate.
            registry_artifacts: The MLflow server's --artifacts-destination (s3://...), so the manifest's
                storageUri is the bucket path KServe fetches.
            gate_rule: When the new version may replace the champion: clauses separated by ';', e.g.
                'f1_macro>=champion; log_loss<=champion+0.02; accuracy>=0.9'. default: the task's primary
                metric (f1_macro, rmse) must not get worse.
            serving_name: A deployed InferenceService to take the champion's metrics from (its pipeserve.dev/*
                annotations); empty: the registry's champion.
            serving_namespace: Namespace of serving_name; empty for the pipeline's own.
            serving_target: triton-gpu, triton-cpu or pipeserve.
            runtime_version: Image tag of the serving runtime (e.g. Triton 24.08-py3); empty for what
                stock KServe 0.21 runs. The ONNX file is converted for that image's ONNX Runtime.
            namespace: Namespace of the InferenceService.
            min_replicas: Minimum replicas.
            max_replicas: Maximum replicas.
            storage_uri: storageUri override; empty to use the registry's location when KServe can fetch it,
                else the model's artifact URI.
            triton_max_batch_size: Triton max_batch_size (0: no Triton batching).
            source_revision: Source revision of the training code, recorded as lineage.
            deploy: Put the model on KServe (after the gate passes, with a registry): apply, wait until rolled
                out and Ready, smoke-test, then move the champion alias; a rollout that never becomes Ready is
                rolled back to the previous champion. Needs the Role in manifests/rbac for the pipeline's
                ServiceAccount.
            smoke: With deploy: send one v2 inference once Ready.
            deploy_timeout_seconds: With deploy: how long to wait for the rollout (and for a rollback).
            train_cpu_request: CPU request of the training and grid-scoring steps (a Kubernetes quantity).
            train_cpu_limit: Their CPU limit.
            train_memory_request: Their memory request, e.g. 2Gi.
            train_memory_limit: Their memory limit.
            train_node_selector: Node labels their pods must run on, e.g. {"pool": "training"}.
            train_tolerations: Tolerations for that node pool, e.g. [{"key": "training", "operator": "Exists",
                "effect": "NoSchedule"}].
        """
        data_task = steps.load_data(source=source, target=target, task=task, test_size=test_size,
                                    random_state=random_state)
        train_data, test_data = data_task.outputs["train_data"], data_task.outputs["test_data"]
        library = data_task.outputs["library"]  # pipeserve, for every other step (load_data carries it)
        sizing = dict(cpu_request=train_cpu_request, cpu_limit=train_cpu_limit, memory_request=train_memory_request,
                      memory_limit=train_memory_limit, node_selector=train_node_selector,
                      tolerations=train_tolerations, on_cluster=on_cluster)
        with dsl.If(param_grid_json == ""):
            train_task = _sized(steps.train(train_data=train_data, estimator=estimator, params_json=params_json,
                                            library=library),
                                **sizing)
        with dsl.Else():
            plan_task = steps.plan_grid(param_grid_json=param_grid_json, params_json=params_json, library=library)
            with dsl.ParallelFor(plan_task.output, parallelism=grid_parallelism) as candidate:
                score_task = _sized(steps.score_candidate(train_data=train_data, candidate=candidate,
                                                          estimator=estimator, cv_folds=cv_folds,
                                                          random_state=random_state, library=library), **sizing)
            select_task = steps.select_candidate(scores=dsl.Collected(score_task.outputs["Output"]),
                                                 param_grid_json=param_grid_json, library=library)
            best_task = _sized(steps.train(train_data=train_data, estimator=estimator,
                                           params_json=select_task.outputs["Output"], library=library), **sizing)
            best_task.set_display_name("train-best")
        model = dsl.OneOf(train_task.outputs["model"], best_task.outputs["model"])
        evaluate_task = steps.evaluate(model=model, train_data=train_data, test_data=test_data, model_name=model_name,
                                       library=library)
        package_task = steps.package(
            model=model,
            train_data=train_data,
            test_data=test_data,
            metrics_json=evaluate_task.outputs["Output"],
            model_name=model_name,
            model_version=model_version,
            triton_max_batch_size=triton_max_batch_size,
            pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            source_revision=source_revision,
            serving_target=serving_target,
            runtime_version=runtime_version,
            library=library,
        )
        serving = dict(model_name=model_name, target=serving_target, namespace=namespace, min_replicas=min_replicas,
                       max_replicas=max_replicas, runtime_version=runtime_version, library=library)
        deploying = dict(model_name=model_name, target=serving_target, namespace=namespace, min_replicas=min_replicas,
                         max_replicas=max_replicas, runtime_version=runtime_version, smoke=smoke,
                         timeout_seconds=deploy_timeout_seconds, pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                         library=library)
        with dsl.If(registry == ""):
            emit_task = steps.emit_inference_service(packaged_model=package_task.outputs["packaged_model"],
                                                     storage_uri=storage_uri, **serving)
            with dsl.If(deploy == True):  # noqa: E712 - a KFP condition, not a Python comparison
                steps.deploy(packaged_model=package_task.outputs["packaged_model"], storage_uri=storage_uri,
                             **deploying).after(emit_task)
        with dsl.Else():
            register_task = steps.register(packaged_model=package_task.outputs["packaged_model"], registry=registry,
                                           model_name=model_name, storage_uri=storage_uri,
                                           registry_artifacts=registry_artifacts,
                                           pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER, library=library)
            version = register_task.outputs["version"]
            gate_task = steps.gate(registered_model=register_task.outputs["registered_model"], model_name=model_name,
                                   champion_json=register_task.outputs["champion_json"], gate_rule=gate_rule,
                                   serving_name=serving_name, serving_namespace=serving_namespace, library=library)
            with dsl.If(gate_task.outputs["Output"] == "promote"):
                with dsl.If(deploy == False):  # noqa: E712
                    promote_task = steps.promote(registry=registry, model_name=model_name, version=version,
                                                 decision=gate_task.outputs["decision"],
                                                 registry_artifacts=registry_artifacts,
                                                 pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER, library=library)
                    steps.emit_inference_service(packaged_model=register_task.outputs["registered_model"],
                                                 storage_uri=register_task.outputs["storage_uri"],
                                                 **serving).after(promote_task)
                with dsl.Else():
                    deploy_task = steps.deploy(packaged_model=register_task.outputs["registered_model"],
                                               registry=registry, version=version,
                                               champion_json=register_task.outputs["champion_json"],
                                               registry_artifacts=registry_artifacts,
                                               storage_uri=register_task.outputs["storage_uri"], **deploying)
                    steps.emit_inference_service(packaged_model=register_task.outputs["registered_model"],
                                                 storage_uri=register_task.outputs["storage_uri"],
                                                 **serving).after(deploy_task)
        from collections import namedtuple

        outputs = namedtuple("Outputs", ["packaged_model"])
        return outputs(package_task.outputs["packaged_model"])

    return train_and_serve


@functools.cache
def _stock() -> Any:
    return train_and_serve_pipeline(build_components())


def __getattr__(name: str) -> Any:
    if name == "train_and_serve":
        return _stock()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
