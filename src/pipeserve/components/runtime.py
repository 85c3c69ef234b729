"""What the components run on, and building them: an image, pinned packages, the embedded library.

Two ways to ship, chosen when the components are built (:func:`build_components`):

* **Stock image** (the default, what ``pipelines/train_and_serve.yaml`` holds): every step runs on
  ``python:3.11.9-slim-bookworm`` and pip-installs what that step imports, with its whole
  dependency tree pinned to the versions installed here (the versions the tests ran with; nothing
  is left for pip to resolve). The first step, ``load_data``, carries the pipeserve modules the
  steps import (:mod:`.embed`), once for the whole pipeline, and unpacks them into its ``library``
  output artifact; every other step takes that artifact as its ``library`` input and puts it first
  on ``sys.path`` (the first line of each component function) before it imports pipeserve.
* **Prebuilt image** (``pipeserve compile --image IMAGE``): an image built from the project's
  Dockerfile already holds pipeserve and every dependency, so a step installs nothing (the library
  artifact then holds the image's own pipeserve).

``kfp.local`` runs use the second way with this interpreter as the "image": ``load_data`` copies
the installed pipeserve into the library artifact, the other steps import that copy, and nothing
is pip-installed into the environment the run started from.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from pipeserve.components.data import load_data
from pipeserve.components.deployment import deploy
from pipeserve.components.emit import emit_inference_service
from pipeserve.components.evaluation import evaluate
from pipeserve.components.gating import gate
from pipeserve.components.grid import plan_grid
from pipeserve.components.packaging import package
from pipeserve.components.promotion import promote
from pipeserve.components.registration import register
from pipeserve.components.scoring import score_candidate
from pipeserve.components.selection import select_candidate
from pipeserve.components.training import train
from pipeserve.errors import ConfigError

BASE_IMAGE = "python:3.11.9-slim-bookworm"

# What each step's code imports, by distribution; the pins add everything those depend on.
_TABLES = ("numpy", "pandas", "pyarrow", "scikit-learn")  # every step that reads a split
# The registry steps talk to an MLflow tracking server (a pod has no lasting disk for a SQLite file):
# mlflow-skinny is MLflow's client alone; the gate also reads a deployed InferenceService.
_REGISTRY = ("mlflow-skinny",)
STEP_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "load_data": (*_TABLES, "fsspec"),  # pandas reads s3://, gs://, https:// through fsspec
    "plan_grid": (),  # JSON in, JSON out: the standard library
    "score_candidate": _TABLES,
    "select_candidate": (),
    "train": (*_TABLES, "skops"),
    "evaluate": (*_TABLES, "skops"),
    "package": (*_TABLES, "skops", "skl2onnx", "onnx", "onnxruntime"),
    "register": _REGISTRY,
    "gate": (*_REGISTRY, "kubernetes"),
    "promote": _REGISTRY,
    "emit_inference_service": ("PyYAML",),
    # Applies and watches through the Kubernetes API (which checks the manifest strictly: no offline
    # schema check, so no jsonschema), moves the alias (MLflow), and smoke-tests over REST v2
    # (tritonclient's HTTP client, numpy).
    "deploy": (*_REGISTRY, "kubernetes", "PyYAML", "numpy", "tritonclient", "geventhttpclient",
               "python-rapidjson", "greenlet"),
}
# Modules the steps' import closure reaches that no step runs, left out of the embedded library
# (pipeserve.components.embed): smoke_inference (make run's local smoke test, never called in a
# step) starts a local server; the deploy step renders with offline_checks(False), so the strict
# schema check and its vendored CRD schemas (28 KB compressed) stay home.
NOT_EMBEDDED = ("pipeserve.localserver", "pipeserve.kube.schema")
# The step that carries the library and hands it to the others as its `library` output artifact.
LIBRARY_STEP = "load_data"
_FUNCTIONS = {f.__name__: f for f in (load_data, plan_grid, score_candidate, select_candidate, train, evaluate,
                                      package, register, gate, promote, emit_inference_service, deploy)}


class Components(NamedTuple):
    """The built components (KFP ``PythonComponent``s), in pipeline order."""

    load_data: Any
    plan_grid: Any
    score_candidate: Any
    select_candidate: Any
    train: Any
    evaluate: Any
    package: Any
    register: Any
    gate: Any
    promote: Any
    emit_inference_service: Any
    deploy: Any


@dataclass(frozen=True)
class ComponentRuntime:
    """Where the steps run and how they get pipeserve and its dependencies.

    Args:
        image: The container image of every step.
        install: True: pip-install each step's pinned requirements, and embed the pipeserve
            modules the steps import in load_data (for a stock Python image). False: the image
            already has both.
    """

    image: str = BASE_IMAGE
    install: bool = True

    @classmethod
    def prebuilt(cls, image: str) -> ComponentRuntime:
        """An image built from the project's Dockerfile: the steps install nothing.

        Raises:
            ConfigError: ``image`` is not an image reference.
        """
        if not re.fullmatch(r"[a-z0-9][\w.\-/:@]*", image):
            raise ConfigError(
                f"{image!r} is not a container image reference; expected e.g. "
                "ghcr.io/pipeserve/pipeserve-runtime:0.1.0 (built with `docker build .`)."
            )
        return cls(image=image, install=False)

    @classmethod
    def local(cls) -> ComponentRuntime:
        """For kfp.local: the steps run in this interpreter, where everything is installed."""
        return cls(install=False)


def _marker_environment(image: str) -> dict[str, str]:
    """The environment markers of the pods' interpreter: a ``python:X.Y.Z-...`` image on x86-64 Linux
    (KFP's usual nodes; a dependency only some other platform needs would be missing there)."""
    version = re.match(r"python:(\d+\.\d+\.\d+)", image)
    if version is None:
        raise ConfigError(f"Cannot tell the Python version of {image!r}; expected python:X.Y.Z-... .")
    full = version.group(1)
    return {
        "python_version": full.rpartition(".")[0], "python_full_version": full, "implementation_version": full,
        "implementation_name": "cpython", "platform_python_implementation": "CPython",
        "os_name": "posix", "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
        "platform_release": "", "platform_version": "",
    }


@functools.cache
def _distribution(name: str) -> importlib.metadata.Distribution | None:
    try:
        return importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def pinned_requirements(names: Iterable[str], image: str = BASE_IMAGE) -> list[str]:
    """``names`` and everything they depend on in ``image``, each pinned to the version installed here.

    The dependency tree is read from the installed distributions' metadata (``Requires-Dist``,
    with environment markers evaluated for the pods' Python on Linux), so the pods install
    exactly what the tests ran with.

    Raises:
        ConfigError: A needed distribution is not installed here, so it has no tested version.
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    environment = _marker_environment(image)
    pins: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str], str]] = [(name, frozenset(), "the components") for name in names]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras, needed_by = todo.pop()
        key = canonicalize_name(name)
        if (key, extras) in seen:
            continue
        seen.add((key, extras))
        dist = _distribution(key)
        if dist is None:
            raise ConfigError(
                f"{name} (needed by {needed_by} in the pods) is not installed here, so there is no tested "
                "version to pin; install the project (`make run` sets up .venv) or compile with --image."
            )
        pins[key] = f"{dist.metadata['Name']}=={dist.version}"
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({**environment, "extra": e}) for e in extras or {""}):
                todo.append((req.name, frozenset(req.extras), dist.metadata["Name"]))
    return [pins[key] for key in sorted(pins)]


def step_packages(step: str, image: str = BASE_IMAGE) -> list[str]:
    """What one step's pod pip-installs: its pinned requirements, then kfp for the executor.

    ``--no-deps``: the list is already complete, so pip resolves nothing (and kfp needs none of
    its own dependencies to run a component; KFP installs it the same way).
    """
    return [*pinned_requirements(STEP_REQUIREMENTS[step], image), f"kfp=={importlib.metadata.version('kfp')}",
            "--no-deps"]


def build_components(runtime: ComponentRuntime | None = None) -> Components:
    """Build the KFP components for ``runtime`` (default: the stock image).

    On the stock image, :data:`LIBRARY_STEP` embeds what every step imports from pipeserve and the
    others embed nothing. Nothing is left behind: the embedded library is written to a temporary
    folder that KFP reads while building the component, then removed.
    """
    from kfp import dsl

    from pipeserve.components.embed import embedded_library

    runtime = runtime or ComponentRuntime()
    built = {}
    for name, func in _FUNCTIONS.items():
        if not runtime.install:
            built[name] = dsl.component(func, base_image=runtime.image, install_kfp_package=False)
        elif name != LIBRARY_STEP:
            built[name] = dsl.component(func, base_image=runtime.image,
                                        packages_to_install=step_packages(name, runtime.image))
        else:
            with embedded_library(*_FUNCTIONS.values(), unused=NOT_EMBEDDED) as archive:
                built[name] = dsl.component(func, base_image=runtime.image,
                                            packages_to_install=step_packages(name, runtime.image),
                                            embedded_artifact_path=archive)
        command = built[name].component_spec.implementation.container.command
        command[-1] = executor_source(command[-1], name)
    return Components(**built)


def executor_source(program: str, function: str) -> str:
    """A component's program (the last argument of its command) with ``function``'s docstring cut
    to its description.

    KFP copies the function's whole source into the executor of every step, docstring included;
    its Args and Returns are already the component's input and output descriptions (what the KFP
    UI shows), so the pod's copy keeps only the text above them.
    """
    import ast

    tree = ast.parse(program)
    func = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == function)
    if ast.get_docstring(func) is None:
        return program
    lines = program.split("\n")
    first, last = func.body[0].lineno - 1, (func.body[0].end_lineno or 0) - 1  # the docstring's lines
    sections = [i for i in range(first + 1, last) if re.fullmatch(r"\s*(Args|Returns|Raises):\s*", lines[i])]
    if not sections:
        return program
    kept = lines[first:sections[0]]
    while not kept[-1].strip():
        kept.pop()
    kept[-1] += '"""'
    return "\n".join(lines[:first] + kept + lines[last + 1:])
