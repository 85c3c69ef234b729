"""Run a pipeline step the way a pod on the stock image runs it, minus pip.

pipeserve exists only in the step's embedded archive, and only the distributions the step pins
are importable (``python -S`` with a site folder of links to exactly those). A module missing
from the archive, or a package missing from the pins, fails here as it would on the cluster.

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
spec.loader.exec_module(module)  # KFP's helper unpacks the embedded archive onto sys.path
import pipeserve
assert pipeserve.__file__.startswith(module.__KFP_EMBEDDED_ASSET_DIR), pipeserve.__file__
from kfp import dsl
artifacts = {k for k, v in config["args"].items() if isinstance(v, dict) and "type" in v}
args = {k: getattr(dsl, v["type"])(name=k, uri=v["uri"], metadata=v["metadata"]) if k in artifacts else v
        for k, v in config["args"].items()}
result = getattr(module, config["function"])(**args)
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

    def run(self, step: str, args: dict[str, Any], label: str | None = None) -> Any:
        """Run ``step`` with ``args`` (artifacts from :meth:`new` or an earlier step); return its result.

        Output artifacts' metadata is written back, so later steps read it as KFP would pass it.
        """
        from pipeserve.components.runtime import step_packages

        work = self.root / (label or step)
        work.mkdir()
        source = work / "ephemeral_component.py"
        source.write_text(getattr(self.components, step).component_spec.implementation.container.command[-1])
        config = work / "config.json"
        config.write_text(json.dumps({"source": str(source), "function": step, "args": args,
                                      "out": str(work / "out.json")}))
        site = site_with_only(step_packages(step), work)
        proc = subprocess.run([sys.executable, "-S", "-c", _RUNNER, str(config)], capture_output=True, text=True,
                              env={**self.env, "PYTHONPATH": str(site)}, cwd=work, timeout=300)
        assert proc.returncode == 0, f"{step}:\n{proc.stderr[-3000:]}"
        out = json.loads((work / "out.json").read_text())
        for key, metadata in out["metadata"].items():
            args[key]["metadata"] = metadata
        return out["result"]
