"""The pipeserve modules the steps import, archived for ``embedded_artifact_path``.

KFP tars and gzips what it is given into the component's command, base64-encoded, and unpacks it
in the pod, so a stock Python image gets pipeserve without installing it. One step carries the
library (``load_data``, which unpacks it into its ``library`` output artifact for every other
step; see :mod:`pipeserve.components.runtime`), and it carries only the modules the steps'
functions can import (read from the source, following every ``import`` of a pipeserve module,
top-level or inside a function, but not those under ``if TYPE_CHECKING:``, and the ``__init__``
of each package on the way), so a server-only edit changes nothing in the compiled pipeline. The
copies leave out docstrings and comments (:func:`code_only`), which the pods do not need; every
line keeps its number, so a traceback from a pod points at the right line of the repository.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import lzma
import tarfile
import tempfile
import textwrap
import tokenize
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pipeserve

_ROOT = Path(pipeserve.__file__).parent
_PACKAGE = "pipeserve"
# Never run in a step: pipeserve.fit/run_pipeline/load (in pipeserve/__init__.py, which every step
# imports) load the SDK only when called, and no step calls them.
NEVER_IN_A_STEP = ("pipeserve.sdk",)


def _module_file(name: str) -> Path | None:
    """The source file of pipeserve module ``name``, or None when ``name`` is not a module."""
    base = _ROOT.joinpath(*name.split(".")[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): a block that never runs."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except those inside ``if TYPE_CHECKING:`` blocks (their ``else`` runs)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if _is_type_checking(node):
            todo.extend(node.orelse)  # type: ignore[attr-defined]
            todo.append(node.test)  # type: ignore[attr-defined]
        else:
            todo.extend(ast.iter_child_nodes(node))


def _imports(source: str, module: str = "", is_package: bool = False) -> set[str]:
    """Every pipeserve name ``source`` imports: modules, and ``module.name`` for each imported name.

    Imports under ``if TYPE_CHECKING:`` are left out: they never run, in a pod or anywhere.
    """
    names: set[str] = set()
    for node in _runtime_nodes(ast.parse(source)):
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


def library_files(*funcs: Callable[..., object], unused: Iterable[str] = ()) -> list[Path]:
    """The files, relative to the package folder, that ``funcs`` need from pipeserve in a pod.

    The modules they import, their imports (at any depth, also those inside functions, because the
    step may call them), the ``__init__.py`` of every package on the way, and the data files those
    modules' code names (e.g. a JSON schema they read).

    Args:
        funcs: The components' functions (one step's, or every step's: the library they share).
        unused: Modules the steps' code can reach but never runs, left out with what only they
            import (declared in :data:`pipeserve.components.runtime.NOT_EMBEDDED`; the pod test
            runs each step from the library alone).
    """
    skip = {*NEVER_IN_A_STEP, *unused}
    todo = set().union(*(_imports(textwrap.dedent(inspect.getsource(func))) for func in funcs))
    modules: dict[str, Path] = {}
    while todo:
        name = todo.pop()
        if name in modules or name in skip:
            continue
        path = _module_file(name)
        if path is None:  # a class or function imported from a module, not a module
            continue
        modules[name] = path
        parts = name.split(".")
        todo.update(".".join(parts[:i]) for i in range(1, len(parts)))  # importing a.b.c runs a and a.b
        todo.update(_imports(path.read_text(), name, path.name == "__init__.py"))
    sources = [code_only(path.read_text()) for path in modules.values()]  # a name in a docstring reads nothing
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


ARCHIVE_NAME = "pipeserve.tar.xz"


@contextlib.contextmanager
def embedded_library(*funcs: Callable[..., object], unused: Iterable[str] = ()) -> Iterator[str]:
    """A temporary ``pipeserve.tar.xz`` of :func:`library_files` (code only), removed on exit.

    Pass it as ``embedded_artifact_path``: KFP reads it while building the component, so the file
    is not needed afterwards. xz at its strongest preset makes the archive about a sixth smaller
    than KFP's own gzip of a folder would (the compiled pipeline carries it base64-encoded), and
    the step that carries it unpacks it itself. The archive is deterministic (sorted members, no
    timestamps or owners): the same library gives the same bytes.
    """
    with tempfile.TemporaryDirectory(prefix="pipeserve-embed-") as root:
        path = Path(root, ARCHIVE_NAME)
        with tarfile.open(path, "w:xz", preset=9 | lzma.PRESET_EXTREME) as tar:
            for rel in library_files(*funcs, unused=unused):
                source = _ROOT / rel
                data = code_only(source.read_text()).encode() if rel.suffix == ".py" else source.read_bytes()
                member = tarfile.TarInfo(f"{_PACKAGE}/{rel.as_posix()}")
                member.size, member.mode = len(data), 0o644
                tar.addfile(member, io.BytesIO(data))
        yield str(path)
