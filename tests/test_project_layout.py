"""Project hygiene: the package list in pyproject is complete, the public API is explicit."""

from __future__ import annotations

from pathlib import Path

import pipeserve

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_ships_in_the_wheel():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for prefix, folder in config["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((prefix, *rel)))
    assert found == listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}; remove: {sorted(listed - found)}"


def test_public_api_is_exactly_all():
    public = sorted(n for n in vars(pipeserve) if not n.startswith("_") or n == "__version__")
    public = [n for n in public if not isinstance(getattr(pipeserve, n), type(pipeserve))]  # not submodules
    assert sorted(pipeserve.__all__) == public


def test_import_is_cheap():
    import subprocess
    import sys

    code = "import sys, pipeserve, pipeserve.cli.main; print(sorted(m for m in ('sklearn','kfp','kserve','onnxruntime','pandas','pyarrow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
