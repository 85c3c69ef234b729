"""The model card: the contract between packaging, the server and the manifest builder.

A packaged model is a *model directory* that is also one model of a Triton model repository::

    <repository>/                 # storageUri points here; Triton loads every sub-folder
      <name>/
        config.pbtxt              # Triton model configuration (onnxruntime backend)
        model-card.json           # this module's ModelCard
        <version>/
          model.onnx              # ONNX graph: input "input", outputs "label"/"probabilities" or "prediction"
          model.skops             # the fitted scikit-learn estimator, in skops format (never pickle)

``files`` in the card maps every other file of the model directory (paths relative to it, with
``/`` separators) to its sha256, and :func:`verify_files` checks them before anything is loaded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeserve.errors import IntegrityError, NotFound, UserError

CARD_FILE = "model-card.json"
SCHEMA_VERSION = 1
ONNX_FILE = "model.onnx"
SKOPS_FILE = "model.skops"
TRITON_CONFIG_FILE = "config.pbtxt"
# Keys of ModelCard.lineage that the manifest builder turns into annotations.
LINEAGE_RUN_ID = "pipeline_run_id"
LINEAGE_REVISION = "source_revision"
# The prefix of the annotations that carry a card's lineage on an InferenceService (kube.builder writes
# them; the gate, the rollout and the read-back read them).
ANNOTATION_PREFIX = "pipeserve.dev/"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor of the model, in Open Inference Protocol terms.

    Args:
        name: Tensor name on the wire (and in the ONNX graph).
        datatype: OIP datatype, e.g. ``FP32``, ``INT64``, ``BYTES``.
        shape: Shape with ``-1`` for variable dimensions, batch first.
        feature_names: Column names for a feature matrix input, in order.
        labels: Class labels for a probabilities output, in column order.
    """

    name: str
    datatype: str
    shape: list[int]
    feature_names: list[str] | None = None
    labels: list[Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class ModelCard:
    """Everything known about one packaged model version.

    Args:
        name: Model name (also the Triton model folder name and the v2 model name).
        version: Model version (the Triton version folder name).
        task: ``classification`` or ``regression``.
        estimator: ``{"name": catalogue name, "class": dotted class, "params": {...}}``.
        metrics: Evaluation metrics on the test split.
        inputs: Input signature.
        outputs: Output signature.
        data: Data lineage: source, target, rows, split, fingerprint (``sha256:<hex>``).
        libraries: Versions of the libraries that produced the files.
        parity: Result of the ONNX vs scikit-learn parity check.
        files: sha256 of every file in the model directory except the card.
        created_at: ISO 8601 UTC timestamp.
        lineage: Provenance: LINEAGE_RUN_ID (pipeline run id), LINEAGE_REVISION (source revision).
        onnx: What the ONNX file needs to load: ``ir_version``, ``opsets`` (``ai.onnx``,
            ``ai.onnx.ml``), ``min_onnxruntime``, and ``packaged_for`` (the runtime image it was
            converted for); see :mod:`pipeserve.runtimes`. Empty in cards written before 0.2.
    """

    name: str
    version: str
    task: str
    estimator: dict[str, Any]
    metrics: dict[str, float]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    data: dict[str, Any]
    libraries: dict[str, str]
    parity: dict[str, Any]
    files: dict[str, str]
    created_at: str
    lineage: dict[str, str] = field(default_factory=dict)
    onnx: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["inputs"] = [t.to_dict() for t in self.inputs]
        out["outputs"] = [t.to_dict() for t in self.outputs]
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelCard:
        version = raw.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise UserError(
                f"Model card schema version {version!r} is not supported; this pipeserve reads version "
                f"{SCHEMA_VERSION}. Use the pipeserve version that packaged the model, or re-package it."
            )
        try:
            fields = dict(raw)
            fields["inputs"] = [TensorSpec(**t) for t in raw["inputs"]]
            fields["outputs"] = [TensorSpec(**t) for t in raw["outputs"]]
            return cls(**fields)
        except (KeyError, TypeError) as exc:
            raise UserError(
                f"Model card is not a pipeserve model card (schema version {SCHEMA_VERSION}): {exc}. "
                "Re-package the model with `pipeserve run`."
            ) from exc

    def output(self, name: str) -> TensorSpec:
        """Return the output tensor named ``name``."""
        for spec in self.outputs:
            if spec.name == name:
                return spec
        valid = ", ".join(s.name for s in self.outputs)
        raise NotFound(f"Model {self.name!r} has no output {name!r}; its outputs are: {valid}.")

    @property
    def n_features(self) -> int:
        return self.inputs[0].shape[-1]


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_digest(files: dict[str, str]) -> str:
    """One sha256 over a card's ``{relative path: sha256}`` (sorted ``path sha`` lines).

    The InferenceService's ``pipeserve.dev/model-files-sha256`` annotation and the registry's
    files tag, so either tells whether two versions hold the same files.
    """
    lines = "".join(f"{path} {digest}\n" for path, digest in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def hash_files(model_dir: Path) -> dict[str, str]:
    """Hash every file under ``model_dir`` except the card itself, keyed by relative POSIX path."""
    return {
        p.relative_to(model_dir).as_posix(): sha256_file(p)
        for p in sorted(model_dir.rglob("*"))
        if p.is_file() and p.name != CARD_FILE
    }


def write_card(model_dir: Path, card: ModelCard) -> Path:
    """Write ``card`` as ``model-card.json`` into ``model_dir`` and return its path."""
    path = model_dir / CARD_FILE
    path.write_text(json.dumps(card.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def read_card(model_dir: Path) -> ModelCard:
    """Read the model card of ``model_dir`` (does not verify file hashes; see verify_files)."""
    path = Path(model_dir) / CARD_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UserError(
            f"No {CARD_FILE} in {model_dir}. Expected a model directory written by `pipeserve run` "
            f"(<repository>/<name>/{CARD_FILE})."
        ) from exc
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}). Re-package the model.") from exc
    return ModelCard.from_dict(raw)


def verify_files(model_dir: Path, card: ModelCard) -> None:
    """Check every file listed in the card against its sha256; raise IntegrityError on any mismatch.

    Files present on disk but absent from the card are refused too, so nothing unverified is loaded.
    """
    model_dir = Path(model_dir)
    problems = []
    actual = hash_files(model_dir)
    for rel, expected in sorted(card.files.items()):
        got = actual.get(rel)
        if got is None:
            problems.append(f"{rel}: missing")
        elif got != expected:
            problems.append(f"{rel}: sha256 {got[:12]}…, card says {expected[:12]}…")
    problems += [f"{rel}: not listed in the model card" for rel in sorted(set(actual) - set(card.files))]
    if problems:
        raise IntegrityError(
            f"Model directory {model_dir} does not match its model card: {'; '.join(problems)}. "
            "The files were changed after packaging; re-package the model or restore the files."
        )


def find_model_dirs(path: Path) -> list[Path]:
    """Return the model directories at ``path``: itself if it holds a card, else its sub-folders that do."""
    path = Path(path)
    if not path.is_dir():
        raise NotFound(f"Model path {path} does not exist or is not a directory.")
    if (path / CARD_FILE).is_file():
        return [path]
    found = sorted(p.parent for p in path.glob(f"*/{CARD_FILE}"))
    if not found:
        raise UserError(
            f"No model found in {path}: expected {CARD_FILE} in it or in one of its sub-folders "
            "(the model repository written by `pipeserve run`)."
        )
    return found
