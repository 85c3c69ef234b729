"""Package a fitted estimator as a Triton model repository entry: ONNX + skops + model card.

See :mod:`pipeserve.modelcard` for the layout. Packaging converts the estimator with skl2onnx,
checks that ONNX Runtime and scikit-learn agree on the test split (the *parity check*), and only
then moves the finished folder into place, so a failed packaging never replaces a good model.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeserve import runtimes
from pipeserve.catalog import CLASSIFICATION
from pipeserve.errors import ConfigError, ParityError
from pipeserve.modelcard import (
    ONNX_FILE,
    SKOPS_FILE,
    TRITON_CONFIG_FILE,
    ModelCard,
    TensorSpec,
    hash_files,
    write_card,
)
from pipeserve.names import name_problem

# The skops allow-list belongs to the estimator catalogue; the server and older callers load from here.
from pipeserve.training import TRUSTED_SKOPS_TYPES, load_estimator  # noqa: F401

INPUT_NAME = "input"
LABEL_OUTPUT = "label"
PROBA_OUTPUT = "probabilities"
REGRESSION_OUTPUT = "prediction"
# float32 ONNX against float64 scikit-learn: observed differences are ~1e-7 for probabilities and
# ~1e-5 for regression values of magnitude ~100; these bounds leave an order of magnitude.
PROBA_ATOL = 1e-4
REGRESSION_RTOL = 1e-4
REGRESSION_ATOL = 1e-4
_LIBRARIES = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "skops", "numpy", "pipeserve")
_TRITON_TYPES = {"FP32": "TYPE_FP32", "INT64": "TYPE_INT64", "BYTES": "TYPE_STRING"}


@dataclass(frozen=True)
class PackageRequest:
    """What to package and how.

    Args:
        name: Model name: the Triton folder, the v2 model name, the InferenceService name (DNS-1035).
        version: Version folder name (a positive integer, as Triton requires).
        task: ``classification`` or ``regression``.
        estimator: The model card's estimator entry (see training.describe).
        metrics: Evaluation metrics for the card.
        feature_names: Feature columns in input order.
        data: Data lineage for the card (source, target, rows, fingerprint, ...).
        lineage: Provenance (pipeline run id, source revision), optional.
        max_batch_size: Triton ``max_batch_size``; 0 disables Triton batching (any row count per
            request); > 0 turns on dynamic batching and caps rows per request at that number.
        onnx_target: The runtime the ONNX file must load in; None means KServe's default Triton
            (see :func:`pipeserve.runtimes.onnx_target`).
    """

    name: str
    version: str
    task: str
    estimator: dict[str, Any]
    metrics: dict[str, float]
    feature_names: list[str]
    data: dict[str, Any]
    lineage: dict[str, str] | None = None
    max_batch_size: int = 0
    onnx_target: runtimes.OnnxTarget | None = None


def _check_request(req: PackageRequest) -> None:
    if problem := name_problem(req.name):
        raise ConfigError(f"Model name {req.name!r} is not valid: it is {problem} (it becomes a folder, a URL path "
                          "and the InferenceService name).")
    if not req.version.isdigit() or int(req.version) < 1:
        raise ConfigError(f"Model version must be a positive integer (a Triton version folder); got {req.version!r}.")
    if req.max_batch_size < 0:
        raise ConfigError(f"max_batch_size must be >= 0, got {req.max_batch_size}.")


def signature(
    model: Any, task: str, n_features: int, feature_names: list[str]
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The v2 input and output tensors of the packaged model."""
    inputs = [TensorSpec(INPUT_NAME, "FP32", [-1, n_features], feature_names=list(feature_names))]
    if task != CLASSIFICATION:
        return inputs, [TensorSpec(REGRESSION_OUTPUT, "FP32", [-1])]
    classes = model.classes_
    label_type = "INT64" if np.issubdtype(classes.dtype, np.integer) else "BYTES"
    labels = [c.item() if hasattr(c, "item") else str(c) for c in classes]
    return inputs, [
        TensorSpec(LABEL_OUTPUT, label_type, [-1]),
        TensorSpec(PROBA_OUTPUT, "FP32", [-1, len(classes)], labels=labels),
    ]


def to_onnx(model: Any, task: str, n_features: int, target: runtimes.OnnxTarget | None = None) -> Any:
    """Convert with skl2onnx for ``target`` (default: KServe's Triton), stamped with opsets it loads.

    Input ``input``; outputs ``label`` + ``probabilities`` (no ZipMap) or ``prediction`` [N].

    Raises:
        ConfigError: skl2onnx cannot convert the model, or not within the target's opsets.
    """
    import onnx
    from onnx import helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    target = target or runtimes.onnx_target()
    options = {id(model): {"zipmap": False}} if task == CLASSIFICATION else None
    try:
        onx = convert_sklearn(
            model, initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))], options=options,
            target_opset=target.converter_opsets(),
        )
    except Exception as exc:  # skl2onnx raises bare RuntimeError/NameError for unsupported models
        raise ConfigError(f"skl2onnx cannot convert {type(model).__name__}: {exc}") from exc
    graph = onx.graph
    if task == CLASSIFICATION:
        names = [o.name for o in graph.output]
        rename = {names[0]: LABEL_OUTPUT, names[1]: PROBA_OUTPUT}
        for node in graph.node:
            node.output[:] = [rename.get(o, o) for o in node.output]
        for out in graph.output:
            out.name = rename[out.name]
    else:
        # skl2onnx emits [N, 1]; scikit-learn's predict returns [N]. Squeeze so both backends agree.
        raw = graph.output[0].name
        axes = helper.make_tensor("squeeze_axes", onnx.TensorProto.INT64, [1], [1])
        graph.initializer.append(axes)
        graph.node.append(helper.make_node("Squeeze", [raw, "squeeze_axes"], [REGRESSION_OUTPUT]))
        del graph.output[:]
        graph.output.append(helper.make_tensor_value_info(REGRESSION_OUTPUT, onnx.TensorProto.FLOAT, [None]))
    onnx.checker.check_model(onx)
    # skl2onnx falls back to newer opsets for operators it cannot write in older ones: catch that here.
    runtimes.check_loadable(runtimes.requirements(onx), target, f"{type(model).__name__} ({task})")
    return onx


def triton_config(name: str, version: str, inputs: list[TensorSpec], outputs: list[TensorSpec],
                  max_batch_size: int = 0) -> str:
    """Triton ``config.pbtxt`` text for the ONNX model (pure; parsed by the tests with Triton's protobuf).

    With ``max_batch_size`` > 0 Triton's batching rules apply: ``dims`` omit the batch dimension,
    and an output that is only ``[batch]`` is declared ``dims: [1]`` with an empty ``reshape``.
    """

    def tensor(spec: TensorSpec) -> str:
        dims = spec.shape[1:] if max_batch_size > 0 else spec.shape
        reshape = ""
        if max_batch_size > 0 and not dims:
            dims, reshape = [1], " reshape: { shape: [ ] }"
        dims_txt = ", ".join(str(d) for d in dims)
        return f'  {{ name: "{spec.name}" data_type: {_TRITON_TYPES[spec.datatype]} dims: [ {dims_txt} ]{reshape} }}'

    lines = [
        f'name: "{name}"',
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {max_batch_size}",
        f"version_policy: {{ specific: {{ versions: [ {version} ] }} }}",
        "input [",
        ",\n".join(tensor(t) for t in inputs),
        "]",
        "output [",
        ",\n".join(tensor(t) for t in outputs),
        "]",
        # KIND_AUTO: on a GPU node Triton places the model on the GPU, elsewhere on the CPU.
        "instance_group [ { count: 1 kind: KIND_AUTO } ]",
    ]
    if max_batch_size > 0:
        lines.append("dynamic_batching { }")
    return "\n".join(lines) + "\n"


def parity_check(onnx_bytes: bytes, model: Any, X: np.ndarray, task: str) -> dict[str, Any]:
    """Compare ONNX Runtime with scikit-learn on X; raise ParityError naming the rows that differ."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    X = np.ascontiguousarray(X, dtype=np.float32)
    problems: list[str] = []
    if task == CLASSIFICATION:
        label, proba = session.run([LABEL_OUTPUT, PROBA_OUTPUT], {INPUT_NAME: X})
        sk_label, sk_proba = model.predict(X), model.predict_proba(X)
        if label.dtype.kind in "OUS":
            label, sk_label = label.astype(str), sk_label.astype(str)
        bad_labels = np.flatnonzero(label != sk_label)
        diff = np.abs(proba - sk_proba).max(axis=1)
        bad_proba = np.flatnonzero(diff > PROBA_ATOL)
        problems += [f"row {i}: label {label[i]!r} (ONNX) vs {sk_label[i]!r} (scikit-learn)" for i in bad_labels[:5]]
        problems += [f"row {i}: probabilities differ by {diff[i]:.3g} (> {PROBA_ATOL})" for i in bad_proba[:5]]
        result = {"rows": int(len(X)), "label_mismatches": int(len(bad_labels)),
                  "max_abs_probability_diff": float(diff.max(initial=0.0)), "probability_atol": PROBA_ATOL}
        n_bad = len(set(bad_labels) | set(bad_proba))
    else:
        (pred,) = session.run([REGRESSION_OUTPUT], {INPUT_NAME: X})
        sk_pred = model.predict(X)
        diff = np.abs(pred - sk_pred)
        bound = REGRESSION_ATOL + REGRESSION_RTOL * np.abs(sk_pred)
        bad = np.flatnonzero(diff > bound)
        problems += [f"row {i}: {pred[i]:.6g} (ONNX) vs {sk_pred[i]:.6g} (scikit-learn), |diff| {diff[i]:.3g}"
                     for i in bad[:5]]
        result = {"rows": int(len(X)), "max_abs_diff": float(diff.max(initial=0.0)),
                  "rtol": REGRESSION_RTOL, "atol": REGRESSION_ATOL}
        n_bad = len(bad)
    if problems:
        raise ParityError(
            f"ONNX and scikit-learn disagree on {n_bad} of {len(X)} test rows: {'; '.join(problems)}"
            f"{' …' if n_bad > 5 else ''}. The ONNX conversion is not faithful for this model; "
            "try another estimator or report the skl2onnx version."
        )
    return {**result, "passed": True}


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for lib in _LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            if lib == "pipeserve":
                # Running from the package embedded in a KFP component (not pip-installed).
                import pipeserve

                versions[lib] = pipeserve.__version__
    return versions


def package_model(model: Any, X_test: np.ndarray, request: PackageRequest, repository: str | Path) -> ModelCard:
    """Write ``<repository>/<name>/`` (Triton layout + skops + model card) and return the card.

    The folder is built in a temporary directory next to its destination and swapped in only
    after the parity check passed, so an existing model is replaced whole or not at all.

    Raises:
        ConfigError: Bad name/version, or a model skl2onnx cannot convert.
        ParityError: ONNX and scikit-learn disagree on ``X_test``.
    """
    import skops.io

    _check_request(request)
    repository = Path(repository)
    repository.mkdir(parents=True, exist_ok=True)
    n_features = len(request.feature_names)
    inputs, outputs = signature(model, request.task, n_features, request.feature_names)
    target = request.onnx_target or runtimes.onnx_target()
    onx = to_onnx(model, request.task, n_features, target)
    onnx_bytes = onx.SerializeToString()
    parity = parity_check(onnx_bytes, model, X_test, request.task)

    with tempfile.TemporaryDirectory(dir=repository, prefix=f".{request.name}.") as tmp:
        staging = Path(tmp) / request.name
        (staging / request.version).mkdir(parents=True)
        (staging / request.version / ONNX_FILE).write_bytes(onnx_bytes)
        skops.io.dump(model, staging / request.version / SKOPS_FILE)
        (staging / TRITON_CONFIG_FILE).write_text(
            triton_config(request.name, request.version, inputs, outputs, request.max_batch_size)
        )
        card = ModelCard(
            name=request.name,
            version=request.version,
            task=request.task,
            estimator=request.estimator,
            metrics=request.metrics,
            inputs=inputs,
            outputs=outputs,
            data=request.data,
            libraries=library_versions(),
            parity=parity,
            files=hash_files(staging),
            created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            lineage=dict(request.lineage or {}),
            onnx={**runtimes.requirements(onx), "packaged_for": target.label},
        )
        write_card(staging, card)
        final = repository / request.name
        backup = Path(tmp) / "previous"
        if final.exists():
            final.rename(backup)
        staging.rename(final)
    return card
