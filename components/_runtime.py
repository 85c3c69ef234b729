"""What every component runs on: a pinned stock Python image, pinned packages, the embedded library.

Package pins are read from the installed distributions, so the compiled pipeline always asks for
exactly the versions the tests ran with (pyproject.toml + constraints.txt are the one source).
"""

from __future__ import annotations

import importlib.metadata
import shutil
import tempfile
from functools import cache
from pathlib import Path

import pipeserve

BASE_IMAGE = "python:3.11.9-slim-bookworm"

_DATA = ("numpy", "pandas", "pyarrow", "fsspec", "scikit-learn")
_MODEL = (*_DATA, "skops")
_PACKAGE = (*_MODEL, "skl2onnx", "onnx", "onnxruntime")
_EMIT = ("kserve", "PyYAML")


def pins(*names: str) -> list[str]:
    return [f"{name}=={importlib.metadata.version(name)}" for name in names]


DATA_PACKAGES = pins(*_DATA)
MODEL_PACKAGES = pins(*_MODEL)
PACKAGE_PACKAGES = pins(*_PACKAGE)
EMIT_PACKAGES = pins(*_EMIT)


@cache
def embedded_package_root() -> str:
    """A clean copy of the pipeserve package (no bytecode) for ``embedded_artifact_path``.

    KFP tars the folder into the component and puts it on ``sys.path`` at run time, so
    ``import pipeserve`` works on the stock image with no custom build.
    """
    root = Path(tempfile.mkdtemp(prefix="pipeserve-embed-"))
    shutil.copytree(
        Path(pipeserve.__file__).parent,
        root / "pipeserve",
        # Components need the library, not the server or the CLI: leaving those out keeps the
        # compiled pipeline smaller and unchanged by server-only edits.
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "serving", "cli", "client.py"),
    )
    return str(root)
