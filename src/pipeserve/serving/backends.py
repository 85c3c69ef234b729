"""Model backends: ONNX Runtime (the default) and scikit-learn loaded from skops (never pickle).

A backend takes a validated 2-D float32 feature matrix and returns the requested outputs as
numpy arrays with the datatypes of the model card's output TensorSpecs. Files are verified
against the card's sha256 by :func:`pipeserve.serving.dataplane.load_model` before a backend
opens them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from pipeserve.errors import ConfigError
from pipeserve.modelcard import ONNX_FILE, SKOPS_FILE, ModelCard


class Backend(Protocol):
    """What the data plane calls: ``run(x, names) -> arrays`` in the order of ``names``."""

    platform: str

    def run(self, x: np.ndarray, names: list[str]) -> list[np.ndarray]: ...


class OnnxBackend:
    """ONNX Runtime on CPU, one session per worker process.

    Args:
        path: The model.onnx file.
        card: The model card (input name).
        intra_op_threads: Threads per session; cores // workers so workers do not oversubscribe.
    """

    platform = "onnxruntime_onnx"

    def __init__(self, path: Path, card: ModelCard, intra_op_threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning threads burn the cores the event loop and the other workers need.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ConfigError(f"ONNX Runtime could not load {path}: {exc}. Re-package the model.") from exc
        self._input = card.inputs[0].name
        graph_outputs = {o.name for o in self._session.get_outputs()}
        missing = [o.name for o in card.outputs if o.name not in graph_outputs]
        if missing:
            raise ConfigError(
                f"{path} has no output(s) {missing} that the model card declares; it has {sorted(graph_outputs)}."
            )
        self._run = self._session.run

    def run(self, x: np.ndarray, names: list[str]) -> list[np.ndarray]:
        return self._run(names, {self._input: x})


class SklearnBackend:
    """A fitted scikit-learn estimator from model.skops, loaded with an explicit type allow-list (never pickle).

    Args:
        path: The model.skops file.
        card: The model card (task and output datatypes).
        threads: OpenMP/BLAS threads for the process (cores // workers). Unlimited, an OpenMP
            estimator (HistGradientBoosting) fights the event loop and the other workers for the
            cores and spin-waits (see ServeSettings.native_threads).
    """

    platform = "sklearn_skops"

    def __init__(self, path: Path, card: ModelCard, threads: int) -> None:
        # Limit native thread pools process-wide, once: a per-call threadpool_limits costs more
        # than a small prediction.
        from threadpoolctl import threadpool_limits

        # One allow-list for the whole project: skops' defaults plus packaging.TRUSTED_SKOPS_TYPES;
        # anything else raises IntegrityError and the server refuses to start.
        from pipeserve.packaging import load_estimator

        self._estimator = load_estimator(path)
        self._thread_limits = threadpool_limits(limits=threads)
        self._dtypes = {o.name: o.datatype for o in card.outputs}
        self._task = card.task

    def run(self, x: np.ndarray, names: list[str]) -> list[np.ndarray]:
        est = self._estimator
        out = []
        for name in names:
            if name == "probabilities":
                out.append(np.asarray(est.predict_proba(x), dtype=np.float32))
            elif self._dtypes[name] == "BYTES":
                out.append(np.asarray(est.predict(x)).astype(str).astype(object))
            elif self._dtypes[name] == "INT64":
                out.append(np.asarray(est.predict(x), dtype=np.int64))
            else:
                out.append(np.asarray(est.predict(x), dtype=np.float32))
        return out


def open_backend(model_dir: Path, card: ModelCard, kind: str, threads: Callable[[str], int]) -> Backend:
    """Open the backend ``kind`` (``auto``, ``onnx`` or ``sklearn``) for a verified model directory.

    ``threads(kind)`` gives the native threads for the chosen backend.
    """
    version_dir = Path(model_dir) / card.version
    onnx_path, skops_path = version_dir / ONNX_FILE, version_dir / SKOPS_FILE
    if kind == "auto":
        kind = "onnx" if onnx_path.is_file() else "sklearn"
    path = onnx_path if kind == "onnx" else skops_path
    if not path.is_file():
        raise ConfigError(f"Backend {kind!r} needs {path}, which does not exist. Choose another --backend.")
    if kind == "onnx":
        return OnnxBackend(path, card, threads(kind))
    return SklearnBackend(path, card, threads(kind))
