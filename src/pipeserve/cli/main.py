"""Entry point of the `pipeserve` command.

Each sub-command lives in its own module under ``pipeserve.cli`` and exposes
``register(subparsers) -> argparse.ArgumentParser``; the parser's ``func`` default is the
callable ``(args) -> int`` that runs it. Modules import heavy libraries inside ``func`` only, so
``pipeserve --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pipeserve import __version__
from pipeserve.errors import PipeserveError

# Order is the order shown in --help.
COMMANDS = ("run", "compile", "serve", "predict", "manifest", "deploy", "doctor", "models", "submit", "schedule")


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line plus a hint, with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pipeserve",
        description="Train a scikit-learn model with Kubeflow Pipelines and serve it with KServe "
        "(or locally, over the same v2 inference protocol).",
    )
    parser.add_argument("--version", action="version", version=f"pipeserve {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"pipeserve.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code: 0 ok, 1 failure, 2 bad usage or bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PipeserveError as exc:
        print(f"pipeserve {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"pipeserve {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
