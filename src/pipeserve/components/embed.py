"""The pipeserve modules a component imports, copied out for ``embedded_artifact_path``.

KFP tars the folder it is given into the component's command, base64-encoded, and puts it on
``sys.path`` in the pod, so ``import pipeserve`` works on a stock Python image. Each component gets
only the modules its function can import (read from the source, following every ``import`` of a
pipeserve module, top-level or inside a function, and the ``__init__`` of each package on the
way), so the compiled pipeline carries small archives and a server-only edit changes none of them.
The copies leave out docstrings and comments (:func:`code_only`), which the pods do not need; every
line keeps its number, so a traceback from a pod points at the right line of the repository.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import tempfile
import textwrap
import tokenize
from collections.abc import Callable, Iterator
from pathlib import Path

import pipeserve

_ROOT = Path(pipeserve.__file__).parent
_PACKAGE = "pipeserve"


def _module_file(name: str) -> Path | None:
    """The source file of pipeserve module ``name``, or None when ``name`` is not a module."""
    base = _ROOT.joinpath(*name.split(".")[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(source: str, module: str = "", is_package: bool = False) -> set[str]:
    """Every pipeserve name ``source`` imports: modules, and ``module.name`` for each imported name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n == _PACKAGE or n.startswith(_PACKAGE + ".")}


def library_files(func: Callable[..., object]) -> list[Path]:
    """The files, relative to the package folder, that ``func`` needs from pipeserve in a pod.

    The modules it imports, their imports (at any depth, also those inside functions, because the
    step may call them), the ``__init__.py`` of every package on the way, and the data files those
    modules name (e.g. a JSON schema they read).
    """
    todo = _imports(textwrap.dedent(inspect.getsource(func)))
    modules: dict[str, Path] = {}
    while todo:
        name = todo.pop()
        if name in modules:
            continue
        path = _module_file(name)
        if path is None:  # a class or function imported from a module, not a module
            continue
        modules[name] = path
        parts = name.split(".")
        todo.update(".".join(parts[:i]) for i in range(1, len(parts)))  # importing a.b.c runs a and a.b
        todo.update(_imports(path.read_text(), name, path.name == "__init__.py"))
    sources = [path.read_text() for path in modules.values()]
    data = {
        file
        for folder in {path.parent for path in modules.values()}
        for file in folder.rglob("*")
        if file.is_file() and file.suffix not in (".py", ".pyc") and "__pycache__" not in file.parts
        and any(file.name in source for source in sources)
    }
    return sorted(path.relative_to(_ROOT) for path in {*modules.values(), *data})


def code_only(source: str) -> str:
    """``source`` without docstrings and comments, every line at its original number.

    A docstring becomes ``""`` (a body may consist of nothing else) followed by the newlines it
    spanned; a comment is cut off its line.
    """
    lines = source.splitlines(keepends=True)

    def column(line: int, utf8_offset: int) -> int:  # ast counts UTF-8 bytes, tokenize characters
        return len(lines[line - 1].encode()[:utf8_offset].decode())

    cuts: list[tuple[int, int, int, int, str]] = []  # (start line, col, end line, col, replacement)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            doc = node.body[0]
            if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str):
                end = doc.end_lineno or doc.lineno
                cuts.append((doc.lineno, column(doc.lineno, doc.col_offset), end, column(end, doc.end_col_offset or 0),
                             '""' + "\n" * (end - doc.lineno)))
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            cuts.append((*token.start, *token.end, ""))
    for start_line, start_col, end_line, end_col, replacement in sorted(cuts, reverse=True):
        head = lines[start_line - 1][:start_col]
        tail = lines[end_line - 1][end_col:]
        lines[start_line - 1:end_line] = [head + replacement + tail]
    return "".join(line.rstrip() + "\n" for line in "".join(lines).splitlines())


@contextlib.contextmanager
def embedded_library(func: Callable[..., object]) -> Iterator[str]:
    """A temporary folder holding ``pipeserve/`` with :func:`library_files` only (code only); removed on exit.

    Pass it as ``embedded_artifact_path``: KFP reads it while building the component, so the
    folder is not needed afterwards.
    """
    with tempfile.TemporaryDirectory(prefix="pipeserve-embed-") as root:
        for rel in library_files(func):
            dest = Path(root, _PACKAGE, rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if rel.suffix == ".py":
                dest.write_text(code_only((_ROOT / rel).read_text()))
            else:
                dest.write_bytes((_ROOT / rel).read_bytes())
        yield root
