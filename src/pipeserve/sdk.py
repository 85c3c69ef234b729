"""Data to predictions in a few lines: fit, register, serve, predict, render the InferenceService.

The same library the pipeline runs, behind one object, :class:`Model`::

    import pipeserve

    m = pipeserve.fit("iris", params={"C": 0.5})            # in this process (train, evaluate, package)
    m.metrics                                                 # {'accuracy': 0.97, 'f1_macro': 0.97, ...}
    with m.serve() as endpoint:                               # pipeserve serve on a free port
        endpoint.predict([[5.1, 3.5, 1.4, 0.2]])              # array([0])
    registration = m.register(registry="sqlite:///mlflow.db", gate="default")   # v1 → champion
    champion = pipeserve.load("iris@champion", registry="sqlite:///mlflow.db")
    isvc = champion.manifest(storage_uri="s3://models/iris/", target="triton-cpu")

``pipeserve.fit`` runs in this process (:func:`pipeserve.workflow.fit_and_package`, optionally after
a cross-validated grid search); ``pipeserve.run_pipeline`` runs the Kubeflow pipeline on
``kfp.local``, step by step as on a cluster. Both return a :class:`Model`.

Nothing heavy is imported by ``import pipeserve``: this module loads on first use.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeserve.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from pipeserve.client import Predictor
    from pipeserve.gate import Verdict
    from pipeserve.localrun import RunResult
    from pipeserve.localserver import LocalServer
    from pipeserve.modelcard import ModelCard
    from pipeserve.registry import ModelVersion, Registry
    from pipeserve.tuning import CVScore

__all__ = ["Endpoint", "Model", "Registration", "fit", "load", "run_pipeline"]


@dataclass(frozen=True)
class Registration:
    """What :meth:`Model.register` did.

    Args:
        model_version: The registered version (the registry assigned its number).
        verdict: The gate's verdict, when a gate rule was given.
        promoted: Whether the version became the champion.
    """

    model_version: ModelVersion
    verdict: Verdict | None = None
    promoted: bool = False

    @property
    def version(self) -> str:
        return self.model_version.version

    @property
    def ref(self) -> str:
        """``NAME/VERSION``, for :func:`load`."""
        return f"{self.model_version.name}/{self.model_version.version}"


class Endpoint:
    """A running local v2 server for a model, and a client for it (from :meth:`Model.serve`).

    Use it as a context manager; leaving the block stops the server.
    """

    def __init__(self, server: LocalServer, predictor: Predictor) -> None:
        self.server = server
        self.predictor = predictor

    @property
    def url(self) -> str:
        """The server's base URL (``http://127.0.0.1:PORT``)."""
        return self.server.url

    def predict(self, rows: Any) -> np.ndarray:
        """The model's primary output (``label`` or ``prediction``) for ``rows``."""
        return self.predictor.predict(rows)

    def infer(self, rows: Any) -> dict[str, np.ndarray]:
        """Every output of the model for ``rows``, by name."""
        return self.predictor.infer(rows)

    def close(self) -> None:
        """Stop the server (SIGTERM; it drains in-flight requests)."""
        self.predictor.close()
        self.server.stop()

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Model:
    """A packaged model: its folder (ONNX for Triton, skops, model card) and what it can do next.

    Made by :func:`fit`, :func:`run_pipeline` or :func:`load`; not constructed directly.

    Args:
        model_dir: The verified model folder (``<repository>/<name>/``).
        registered: The registry's version, when the model was loaded from a registry.
        storage_uri: Where a cluster fetches it from, when known (a registry that KServe can read).
        search: Every grid candidate's cross-validated score, when fitted with a grid.
        run: The local pipeline run's result, when made by :func:`run_pipeline`.
    """

    def __init__(self, model_dir: Path, *, registered: ModelVersion | None = None, storage_uri: str | None = None,
                 search: list[CVScore] | None = None, run: RunResult | None = None) -> None:
        from pipeserve.modelcard import read_card

        self.model_dir = Path(model_dir)
        self.card: ModelCard = read_card(self.model_dir)
        self.registered = registered
        self.storage_uri = storage_uri
        self.search = search
        self.run = run

    def __repr__(self) -> str:
        return f"<pipeserve.Model {self.name} v{self.version}: {self.card.estimator.get('name')} at {self.model_dir}>"

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> str:
        return self.card.version

    @property
    def metrics(self) -> dict[str, float]:
        """Held-out metrics (the test split the model never saw while training)."""
        return dict(self.card.metrics)

    @property
    def repository(self) -> Path:
        """The model repository holding :attr:`model_dir` (what ``pipeserve serve`` and KServe take)."""
        return self.model_dir.parent

    def serve(self, *, grpc: bool = False, timeout: float = 60.0) -> Endpoint:
        """Start ``pipeserve serve`` on this model (a free port on 127.0.0.1) and connect to it.

        Args:
            grpc: Also serve gRPC (and talk gRPC to it).
            timeout: Seconds to wait for the server to be ready.
        """
        from pipeserve.client import Predictor
        from pipeserve.localserver import LocalServer

        server = LocalServer.serve(self.repository, grpc=grpc, timeout=timeout).start()
        try:
            predictor = Predictor(server.grpc_url if grpc and server.grpc_url else server.url, self.name, grpc=grpc)
        except BaseException:
            server.stop()
            raise
        return Endpoint(server, predictor)

    def register(self, registry: str | Registry | None = None, *, alias: str | None = "challenger",
                 gate: str | None = None, reason: str = "") -> Registration:
        """Register this model as a new version (the registry assigns its number).

        Args:
            registry: A registry or its URI (None: ``$PIPESERVE_REGISTRY``, else ``./mlflow.db``).
            alias: Point this alias at the new version (default ``challenger``; None for none).
            gate: A gate rule (``"default"``: the task's primary metric must not get worse): the
                version becomes the champion only if it passes against the current champion (the
                first version always does). None: register only.
            reason: Recorded in the alias history.

        Raises:
            ConflictError: The champion moved between the gate's read and the promotion.
        """
        from pipeserve.gate import gate_registered
        from pipeserve.registry.resolve import open_any

        reg = open_any(registry)
        mv = reg.register(self.model_dir, alias=alias, reason=reason)
        if gate is None:
            return Registration(mv)
        result = gate_registered(reg, mv.name, mv.version, gate)
        promoted = False
        if result.verdict.passed:
            promoted = reg.promote(mv.name, mv.version, expected=result.expected_champion, reason=reason) is not None
        return Registration(reg.get(mv.ref), result.verdict, promoted)

    def manifest(self, storage_uri: str | None = None, **options: Any) -> dict[str, Any]:
        """The KServe InferenceService that serves this model, checked strictly (a dict, camelCase).

        Args:
            storage_uri: Where the cluster fetches the model repository (default: the registry's
                location, for a model loaded from a registry KServe can read).
            **options: :class:`pipeserve.kube.DeploymentSpec` fields: ``target`` (``triton-gpu``,
                ``triton-cpu``, ``pipeserve``), ``namespace``, ``min_replicas``, ``mode``, ...

        Raises:
            ConfigError: No storage URI, or options KServe would refuse.
        """
        from pipeserve.kube import DeploymentSpec
        from pipeserve.kube.render import render_documents

        uri = storage_uri or self.storage_uri
        if not uri:
            raise ConfigError(f"{self.name} v{self.version} has no storage URI a cluster can fetch: pass "
                              "storage_uri='s3://bucket/path/' (the folder holding the model repository).")
        return render_documents(self.card, uri, DeploymentSpec.from_options(**options)).inference_service


def fit(source: str, *, estimator: str | None = None, params: Mapping[str, Any] | None = None,
        grid: Mapping[str, Sequence[Any]] | None = None, target: str | None = None, task: str | None = None,
        name: str | None = None, output: str | Path | None = None, test_size: float = 0.2, random_state: int = 42,
        cv_folds: int = 5, serving_target: str = "triton-gpu", runtime_version: str | None = None) -> Model:
    """Train, evaluate and package a model in this process.

    Args:
        source: A built-in dataset (``iris``, ``breast_cancer``, ``wine``, ``digits``,
            ``diabetes``), a CSV/Parquet path or an fsspec URL.
        estimator: Catalogue estimator (default: the task's, e.g. ``logistic_regression``).
        params: Hyperparameters, checked against the estimator.
        grid: Values to search, e.g. ``{"C": [0.1, 1, 10]}``: every combination is scored by
            cross-validation on the training split only, and the best is trained.
        target: Target column (files only).
        task: ``classification`` or ``regression`` (default: inferred).
        name: Model name (default: the dataset's).
        output: Model repository folder (default: a temporary one, removed at exit).
        test_size: Fraction held out for evaluation.
        random_state: Seed of the split (and of the cross-validation folds).
        cv_folds: Folds per grid candidate.
        serving_target: Where it will be served; the ONNX file is converted for that runtime.
        runtime_version: The runtime's image tag (default: what stock KServe 0.21 runs).
    """
    from pipeserve import data, training, tuning
    from pipeserve.workflow import fit_and_package

    params = dict(params or {})
    search = None
    if grid:
        ds = data.load_dataset(source, target=target, task=task)
        split = data.split_dataset(ds, test_size=test_size, random_state=random_state)
        name_ = estimator or training.DEFAULT_ESTIMATOR[ds.task]
        candidates = tuning.expand_grid(grid, params)
        search = [tuning.cross_validate(ds.task, name_, candidate, split.X_train, split.y_train, folds=cv_folds,
                                        random_state=random_state, index=i) for i, candidate in enumerate(candidates)]
        params = tuning.select_best(search).params
    repository = Path(output) if output is not None else _temporary_folder()
    result = fit_and_package(source, repository, target=target, task=task, estimator=estimator, params=params,
                             name=name, test_size=test_size, random_state=random_state,
                             serving_target=serving_target, runtime_version=runtime_version)
    model = Model(result.model_dir, search=search)
    _keep_alive(model, repository if output is None else None)
    return model


def run_pipeline(source: str = "iris", *, output: str | Path = "build", estimator: str | None = None,
                 params: Mapping[str, Any] | None = None, grid: Mapping[str, Sequence[Any]] | None = None,
                 registry: str | None = None, gate: str = "default", model_name: str | None = None,
                 verbose: bool = False, **arguments: Any) -> Model:
    """Run the train_and_serve pipeline locally on ``kfp.local``, as Kubeflow Pipelines would.

    Args:
        source: Dataset, as for :func:`fit`.
        output: Results folder (``model/``, ``inferenceservice.yaml``, ``metrics.json``, ...).
        estimator: Catalogue estimator.
        params: Hyperparameters.
        grid: Values to search (the pipeline fans out, one step per candidate).
        registry: Register the model there, gate it and promote it if it passes (a URI).
        gate: The gate rule (with ``registry``).
        model_name: Model name (default: the dataset's).
        verbose: Stream KFP's logs.
        **arguments: Any other pipeline parameter (``serving_target``, ``storage_uri``, ...).

    Returns:
        The packaged (with a registry: registered) model; ``model.run`` has the whole result.
    """
    import json

    from pipeserve.localrun import RunOptions
    from pipeserve.localrun import run_pipeline as run_local
    from pipeserve.registry import RegistrySettings
    from pipeserve.workflow import default_model_name

    out = Path(output).resolve()
    args = {"source": source, "estimator": estimator or "", "params_json": json.dumps(dict(params or {})),
            "param_grid_json": json.dumps({k: list(v) for k, v in grid.items()}) if grid else "",
            "model_name": model_name or default_model_name(source), "storage_uri": (out / "model").as_uri(),
            **arguments}
    if registry is not None:
        args.update(registry=RegistrySettings.resolve(registry).uri, gate_rule=gate)
    result = run_local(RunOptions(output=out, arguments=args, verbose=verbose))
    return Model(result.model_dir, search=result.search.scores if result.search else None, run=result)


def load(ref: str | Path, *, registry: str | Registry | None = None, output: str | Path | None = None,
         artifacts_destination: str | None = None) -> Model:
    """A packaged model from a folder, or a registered version (downloaded and verified).

    Args:
        ref: ``NAME@ALIAS`` (``iris@champion``), ``NAME/VERSION`` (``iris/3``), or a model folder
            or repository on disk.
        registry: The registry, or its URI (None: ``$PIPESERVE_REGISTRY``, else ``./mlflow.db``).
        output: Folder to download into (default: a temporary one, removed at exit).
        artifacts_destination: The MLflow server's ``--artifacts-destination`` (for the storage URI).

    Raises:
        NotFound: No such model, alias or version.
        IntegrityError: The files do not match the registered card.
    """
    from pipeserve.registry import is_model_ref, resolve

    if not is_model_ref(ref):
        from pipeserve.kube.render import select_model

        model_dir, _ = select_model(Path(ref))  # checks every file against the card
        return Model(model_dir)
    dest = Path(output) if output is not None else _temporary_folder()
    found = resolve(str(ref), dest, registry=registry, artifacts_destination=artifacts_destination)
    model = Model(found.model_dir, registered=found.version, storage_uri=found.storage_uri)
    _keep_alive(model, dest if output is None else None)
    return model


def _temporary_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="pipeserve-model-"))


def _keep_alive(model: Model, temporary: Path | None) -> None:
    """Remove the model's temporary folder when the model object goes away (or at exit)."""
    if temporary is not None:
        weakref.finalize(model, shutil.rmtree, temporary, ignore_errors=True)
