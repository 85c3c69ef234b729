"""`pipeserve predict`: send rows to a model on any v2 inference server and print its outputs.

    pipeserve predict iris --url http://127.0.0.1:8080 '[[5.1, 3.5, 1.4, 0.2]]'
    pipeserve predict iris --url 127.0.0.1:8081 --grpc --file test.csv --target target --output json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipeserve.errors import DataError, InvalidInput


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "predict",
        help="Send rows to a model on a v2 inference server (pipeserve, KServe, Triton, MLServer).",
        description="Send rows to a model over the Open Inference Protocol (REST or gRPC) and print "
        "one result per row. Exit codes: 0 ok, 1 server unreachable or failing, 2 bad input.",
    )
    # `predict iris --url U ROWS`: options between positionals need intermixed parsing.
    parser.__class__ = _intermixed(type(parser))
    parser.add_argument("name", metavar="NAME", help="Model name on the server.")
    parser.add_argument("rows", nargs="?", metavar="ROWS",
                        help="Rows as JSON, e.g. '[[5.1,3.5,1.4,0.2]]' (or give --file).")
    parser.add_argument("--url", required=True, help="Server URL: http://HOST:PORT (REST) or HOST:PORT with --grpc.")
    parser.add_argument("--grpc", action="store_true", help="Use gRPC v2 instead of REST.")
    parser.add_argument("--binary", action="store_true", help="REST: use the binary tensor extension instead of JSON.")
    parser.add_argument("--file", type=Path,
                        help="CSV, JSON (array of rows or of objects) or Parquet file of feature rows.")
    parser.add_argument("--target", help="Column of --file to drop (e.g. the label column of a test split).")
    parser.add_argument("--output", choices=("table", "json"), default="table", help="table (default) or JSON lines.")
    parser.add_argument("--model-version", default="", help="Model version (default: the server's choice).")
    parser.add_argument("--timeout", type=float, default=30.0, help="Seconds to wait for the server (default 30).")
    parser.set_defaults(func=_run, command="predict")
    return parser


def _intermixed(base: type[argparse.ArgumentParser]) -> type[argparse.ArgumentParser]:
    """A subclass of ``base`` whose parse_known_args allows options between positionals."""

    class _IntermixedParser(base):  # type: ignore[misc, valid-type]
        _intermixing = False

        def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
            if self._intermixing:  # parse_known_intermixed_args calls us back
                return super().parse_known_args(args, namespace)
            self._intermixing = True
            try:
                return self.parse_known_intermixed_args(args, namespace)
            finally:
                self._intermixing = False

    return _IntermixedParser


def _run(args: argparse.Namespace) -> int:
    from pipeserve.client import Predictor

    if (args.rows is None) == (args.file is None):
        raise InvalidInput("Give the rows either as a JSON argument after NAME or with --file (exactly one of them).")
    rows = _parse_rows(args.rows) if args.file is None else _read_file(args.file, args.target)
    with Predictor(
        args.url, args.name, grpc=args.grpc, binary=args.binary, timeout=args.timeout, version=args.model_version
    ) as predictor:
        outputs = predictor.infer(rows)
    lines = format_json_lines(outputs) if args.output == "json" else format_table(outputs)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _parse_rows(text: str) -> Any:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"ROWS must be JSON, e.g. '[[5.1, 3.5, 1.4, 0.2]]'; got {text[:60]!r} ({exc.msg} at column {exc.colno})."
        ) from exc
    if isinstance(rows, dict) and "instances" in rows:  # a v1 body pasted as-is
        rows = rows["instances"]
    if not isinstance(rows, list) or not rows:
        raise InvalidInput(
            f"ROWS must be a non-empty JSON array of rows, e.g. '[[5.1, 3.5, 1.4, 0.2]]'; got {text[:60]!r}."
        )
    return rows


#: What --file may be: a table of feature rows (the suffix says which format).
FILE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq", ".json")


def _read_file(path: Path, target: str | None) -> Any:
    import numpy as np
    import pandas as pd

    from pipeserve.data import non_numeric_columns, read_table

    if not path.is_file():
        raise DataError(f"--file {str(path)!r} does not exist; give a CSV, JSON or Parquet file of feature rows.")
    frame = read_table(path, FILE_SUFFIXES, name="--file")
    if target is not None:
        if isinstance(frame.columns, pd.RangeIndex):  # plain rows from JSON
            raise DataError(f"--target {target!r} needs named columns; {path} holds plain arrays of rows.")
        if target not in frame.columns:
            columns = ", ".join(map(str, frame.columns))
            raise DataError(f"--target {target!r} is not a column of {path}; its columns are: {columns}.")
        frame = frame.drop(columns=[target])
    if frame.empty:
        raise DataError(f"{path} has no rows.")
    non_numeric = non_numeric_columns(frame)
    if non_numeric:
        raise DataError(
            f"{path}: feature columns must be numeric; {', '.join(non_numeric)} are not. "
            "Drop the label column with --target NAME."
        )
    return frame.to_numpy(dtype=np.float64)


def _cell(value: Any) -> Any:
    """One output entry as plain JSON-able Python."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "tolist"):
        return _cell_list(value.tolist())
    return value


def _cell_list(value: Any) -> Any:
    if isinstance(value, list):
        return [_cell_list(v) for v in value]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _rows(outputs: dict[str, Any]) -> list[dict[str, Any]]:
    n = max((len(v) for v in outputs.values() if getattr(v, "ndim", 1) > 0), default=0)
    return [{name: _cell(arr[i]) for name, arr in outputs.items()} for i in range(n)]


def format_json_lines(outputs: dict[str, Any]) -> list[str]:
    """One JSON object per input row: ``{"label": 0, "probabilities": [...]}``."""
    return [json.dumps(row) for row in _rows(outputs)]


def format_table(outputs: dict[str, Any]) -> list[str]:
    """A plain-text table: one line per input row, one column per output."""

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.6g}"
        if isinstance(value, list):
            return "[" + ", ".join(fmt(v) for v in value) + "]"
        return str(value)

    header = ["row", *outputs]
    body = [[str(i), *(fmt(v) for v in row.values())] for i, row in enumerate(_rows(outputs))]
    widths = [max(len(r[c]) for r in [header, *body]) for c in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in [header, *body]]
