"""Run a pipeline step the way a pod on the stock image runs it, minus pip.

pipeserve exists only in the library artifact (load_data unpacks the library it carries into it;
every other step is given it), and only the distributions the step pins are importable
(``python -S`` with a site folder of links to exactly those). A module missing from the library,
or a package missing from the pins, fails here as it would on the cluster.

Import it as ``from podsim import StepRunner`` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

_RUNNER = """
import importlib.util, json, sys
config = json.load(open(sys.argv[1]))
spec = importlib.util.spec_from_file_location("ephemeral_component", config["source"])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)  # KFP's helper unpacks what the step embeds (load_data: the library)
try:
    import pipeserve
except ImportError:  # nowhere but in the library artifact
    pass
else:
    raise AssertionError(f"pipeserve is importable before the step put its library first: {pipeserve.__file__}")
from kfp import dsl
artifacts = {k for k, v in config["args"].items() if isinstance(v, dict) and "type" in v}
args = {k: getattr(dsl, v["type"])(name=k, uri=v["uri"], metadata=v["metadata"]) if k in artifacts else v
        for k, v in config["args"].items()}
result = getattr(module, config["function"])(**args)
library = config["args"]["library"]["uri"]
assert sys.modules["pipeserve"].__file__.startswith(library + "/"), sys.modules["pipeserve"].__file__
assert all(m.__file__.startswith(library + "/") for n, m in sys.modules.items() if n.startswith("pipeserve.")
           and getattr(m, "__file__", None))
json.dump({"result": list(result) if isinstance(result, tuple) else result,
           "metadata": {k: args[k].metadata for k in artifacts},
           "modules": sorted({m.split(".")[0] for m in sys.modules})}, open(config["out"], "w"))
"""


def site_with_only(requirements: list[str], root: Path) -> Path:
    """A site-packages folder holding only the pinned distributions (links into this venv's)."""
    site = root / "site"
    site.mkdir()
    for pin in requirements:
        if pin.startswith("--"):
            continue
        dist = importlib.metadata.distribution(pin.split("==")[0])
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] != ".."}:
            if not (site / top).exists():
                (site / top).symlink_to(Path(dist.locate_file(top)))
    return site


class StepRunner:
    """Runs stock-image steps one after another, passing artifacts between them by name.

    Args:
        root: Work folder (each step gets ``root/<step>``, artifacts ``root/artifacts/<name>``).
        env: Extra environment variables for the steps.
    """

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        from pipeserve.components import build_components

        self.root = root
        self.env = {"PATH": os.environ["PATH"], "_KFP_RUNTIME": "true", "HOME": str(root), **(env or {})}
        self.components = build_components()
        self.artifacts: dict[str, dict[str, Any]] = {}
        (root / "artifacts").mkdir(parents=True, exist_ok=True)

    def new(self, kind: str, name: str) -> dict[str, Any]:
        """A new output artifact of KFP type ``kind`` (Dataset, Model, Metrics, Markdown, ...)."""
        self.artifacts[name] = {"type": kind, "uri": str(self.root / "artifacts" / name), "metadata": {}}
        return self.artifacts[name]

    def library(self) -> dict[str, Any]:
        """load_data's library artifact (load_data runs first, on iris, if it has not run yet)."""
        if "library" not in self.artifacts:
            self.run("load_data", {"source": "iris", "train_data": self.new("Dataset", "library-run-train"),
                                   "test_data": self.new("Dataset", "library-run-test")}, label="load_data_library")
        return self.artifacts["library"]

    def run(self, step: str, args: dict[str, Any], label: str | None = None, error: str | None = None) -> Any:
        """Run ``step`` with ``args`` (artifacts from :meth:`new` or an earlier step); return its result.

        load_data gets a new ``library`` output artifact, every other step that library as input
        (unless ``args`` name another). Output artifacts' metadata is written back, so later steps
        read it as KFP would pass it. With ``error``, the step must fail with that text in its
        stderr (returned).
        """
        from pipeserve.components.runtime import LIBRARY_STEP

        if "library" not in args:
            args["library"] = self.new("Artifact", "library") if step == LIBRARY_STEP else self.library()
        work = self.root / (label or step)
        work.mkdir()
        source = work / "ephemeral_component.py"
        source.write_text(getattr(self.components, step).component_spec.implementation.container.command[-1])
        config = work / "config.json"
        config.write_text(json.dumps({"source": str(source), "function": step, "args": args,
                                      "out": str(work / "out.json")}))
        proc = self._python(step, work, _RUNNER, str(config))
        if error is not None:
            assert proc.returncode != 0 and error in proc.stderr, f"{step}:\n{proc.stderr[-3000:]}"
            return proc.stderr
        assert proc.returncode == 0, f"{step}:\n{proc.stderr[-3000:]}"
        out = json.loads((work / "out.json").read_text())
        for key, metadata in out["metadata"].items():
            args[key]["metadata"] = metadata
        return out["result"]

    def imports(self, step: str, modules: list[str]) -> None:
        """Import ``modules`` as ``step``'s pod would: from the library artifact, with the step's pins only."""
        work = self.root / f"{step}-imports"
        work.mkdir()
        library = self.library()["uri"]
        code = ("import importlib, sys; sys.path.insert(0, sys.argv[1]); "
                "bad = [m for m in sys.argv[2:] if not importlib.import_module(m).__file__.startswith(sys.argv[1])]; "
                "assert not bad, bad")
        proc = self._python(step, work, code, library, *modules)
        assert proc.returncode == 0, f"{step}:\n{proc.stderr[-3000:]}"

    def _python(self, step: str, work: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
        from pipeserve.components.runtime import step_packages

        site = site_with_only(step_packages(step), work)
        return subprocess.run([sys.executable, "-S", "-c", code, *args], capture_output=True, text=True,
                              env={**self.env, "PYTHONPATH": str(site)}, cwd=work, timeout=300)
