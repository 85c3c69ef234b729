"""`pipeserve predict` against the real `pipeserve serve` (REST JSON, REST binary, gRPC) and KServe.

Success paths run the CLI in-process (``run_cli``); the exit-code contract (one line on stderr,
no traceback) is also checked end to end in a child process (``spawn_cli``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli, spawn_cli
from interop import kserve_server

from pipeserve.cli.predict import format_json_lines, format_table
from pipeserve.localserver import LocalServer, free_port

ROWS = "[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]"


@pytest.fixture(scope="module")
def server(iris_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    log = tmp_path_factory.mktemp("logs") / "pipeserve.log"
    with LocalServer.serve(iris_repo, "--log-level", "warning", grpc=True, log_path=log) as local:
        yield {"rest": local.url, "grpc": local.grpc_url}


def run(*args: str) -> tuple[int, str, str]:
    """`pipeserve predict ARGS...` in-process: (exit code, stdout, stderr)."""
    result = run_cli("predict", *args)
    return result.code, result.out, result.err


def expected(iris_fit, rows: np.ndarray) -> tuple[list[int], np.ndarray]:  # type: ignore[no-untyped-def]
    return iris_fit.model.predict(rows).tolist(), iris_fit.model.predict_proba(rows)


def test_json_rows_print_a_table(server, iris_fit) -> None:
    code, out, err = run("iris", "--url", server["rest"], ROWS)
    assert (code, err) == (0, "")
    header, *lines = out.splitlines()
    assert header.split() == ["row", "label", "probabilities"]
    labels, _ = expected(iris_fit, np.array(json.loads(ROWS), np.float32))
    assert [int(line.split()[1]) for line in lines] == labels
    assert [int(line.split()[0]) for line in lines] == [0, 1]


@pytest.mark.parametrize("transport", [[], ["--binary"], ["--grpc"]])
def test_json_lines_match_sklearn_on_every_transport(server, iris_fit, transport) -> None:
    url = server["grpc"] if transport == ["--grpc"] else server["rest"]
    code, out, err = run("iris", "--url", url, *transport, "--output", "json", ROWS)
    assert (code, err) == (0, "")
    records = [json.loads(line) for line in out.splitlines()]
    labels, proba = expected(iris_fit, np.array(json.loads(ROWS), np.float32))
    assert [r["label"] for r in records] == labels
    np.testing.assert_allclose([r["probabilities"] for r in records], proba, atol=1e-5)


def test_a_single_flat_row(server) -> None:
    code, out, _ = run("iris", "--url", server["rest"], "--output", "json", "[5.1, 3.5, 1.4, 0.2]")
    assert code == 0 and len(out.splitlines()) == 1


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_file_rows_with_the_target_dropped(server, iris_fit, iris_split, tmp_path, fmt) -> None:
    X, y = iris_split
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    frame["target"] = y
    path = tmp_path / f"test.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "parquet":
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records")
    code, out, err = run("iris", "--url", server["rest"], "--binary", "--file", str(path), "--target", "target",
                         "--output", "json")
    assert (code, err) == (0, "")
    assert [json.loads(line)["label"] for line in out.splitlines()] == iris_fit.model.predict(X).tolist()


def test_json_file_of_plain_rows(server, tmp_path) -> None:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps({"instances": json.loads(ROWS)}))
    code, out, _ = run("iris", "--url", server["rest"], "--file", str(path))
    assert code == 0 and len(out.splitlines()) == 3  # header + 2 rows


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["[[5.1, 3.5"], "ROWS must be JSON"),
        (["{}"], "non-empty JSON array"),
        (["[[1, 2, 3]]"], r"expects rows of shape \[N, 4\]"),
        (['[["a", "b", "c", "d"]]'], "takes numbers"),
        ([], "either as a JSON argument after NAME or with --file"),
        ([ROWS, "--file", "x.csv"], "either as a JSON argument after NAME or with --file"),
        (["--file", "does-not-exist.csv"], "does not exist"),
        (["--file", "{csv}"], "feature columns must be numeric"),
        (["--file", "{csv}", "--target", "nope"], "'nope' is not a column"),
        (["--file", "{txt}"], "Unsupported --file type"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(server, tmp_path, args, message) -> None:
    csv = tmp_path / "rows.csv"
    pd.DataFrame({"a": [1.0], "b": [2.0], "c": [3.0], "d": [4.0], "species": ["setosa"]}).to_csv(csv, index=False)
    (tmp_path / "rows.txt").write_text("1,2,3,4\n")
    args = [a.replace("{csv}", str(csv)).replace("{txt}", str(tmp_path / "rows.txt")) for a in args]
    code, out, err = run("iris", "--url", server["rest"], *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("pipeserve predict: error: ")
    assert re.search(message, err), err


def test_unknown_model_exit_2_with_the_servers_message(server) -> None:
    code, _, err = run("nope", "--url", server["rest"], ROWS)
    assert code == 2 and "nope" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("grpc", [False, True])
def test_unreachable_server_exit_1_one_line_no_traceback(grpc) -> None:
    port = free_port()
    url = f"127.0.0.1:{port}" if grpc else f"http://127.0.0.1:{port}"
    proc = spawn_cli("predict", "iris", "--url", url, *(["--grpc"] if grpc else []), "--timeout", "5", ROWS, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and str(port) in proc.stderr


def test_bad_rows_exit_2_end_to_end(server) -> None:
    proc = spawn_cli("predict", "iris", "--url", server["rest"], "[[1, 2]]", timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_against_kserve(iris_repo, iris_fit, tmp_path) -> None:
    with kserve_server(iris_repo, tmp_path / "kserve.log") as kserve:
        for extra in ([], ["--binary"]):
            code, out, err = run("iris", "--url", kserve.url, *extra, "--output", "json", ROWS)
            assert (code, err) == (0, "")
            labels, _ = expected(iris_fit, np.array(json.loads(ROWS), np.float32))
            assert [json.loads(line)["output-0"] for line in out.splitlines()] == labels
        code, out, _ = run("iris", "--url", kserve.grpc_url, "--grpc", ROWS)
        assert code == 0 and out.splitlines()[0].split() == ["row", "output-0"]


def test_formatters() -> None:
    outputs = {"label": np.array([b"setosa", b"virginica"], dtype=object),
               "probabilities": np.array([[0.9, 0.1], [0.25, 0.75]], dtype=np.float32)}
    assert [json.loads(line) for line in format_json_lines(outputs)] == [
        {"label": "setosa", "probabilities": [pytest.approx(0.9), pytest.approx(0.1)]},
        {"label": "virginica", "probabilities": [0.25, 0.75]},
    ]
    table = format_table(outputs)
    assert table[0].split() == ["row", "label", "probabilities"]
    assert table[2] == "1    virginica  [0.25, 0.75]"
