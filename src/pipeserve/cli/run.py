"""`pipeserve run` (placeholder: replaced by the module that implements it)."""

from __future__ import annotations

import argparse

from pipeserve.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("run", help="(not built yet)")
    parser.set_defaults(func=_run, command="run")
    return parser


def _run(args: argparse.Namespace) -> int:
    raise ConfigError("`pipeserve run` is not built yet.")
