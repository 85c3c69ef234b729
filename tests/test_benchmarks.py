"""Smoke tests of the benchmark code itself (no timing assertions).

Run with ``python -m pytest tests/test_benchmarks.py`` (wrk must be installed; `make bench`
installs it, these tests do not).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import run as bench
from benchmarks.harness import APPS_DIR, BenchError, Body, Server, parse_wrk, run_wrk
from pipeserve.localserver import free_port

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (apt-get install wrk)")

SAMPLE = """Running 1s test @ http://127.0.0.1:1/
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    52.00us   10.00us   1.00ms   90.00%
  17000 requests in 1.00s, 2.00MB read
Requests/sec:  17000.00
BENCH_JSON {"requests": 17000, "duration_us": 1000000, "bytes": 2000000, "connect_errors": 0, "read_errors": 1, \
"write_errors": 0, "status_errors": 2, "timeouts": 0, "p50_us": 50, "p90_us": 60, "p99_us": 120, "mean_us": 52.0, \
"max_us": 1000}
"""


def test_parse_wrk_summary_line() -> None:
    res = parse_wrk(SAMPLE)
    assert (res.requests, res.errors, res.p50_us, res.p99_us) == (17000, 3, 50, 120)
    assert res.rps == pytest.approx(17000.0)


def test_parse_wrk_without_summary_fails_loudly() -> None:
    with pytest.raises(BenchError, match="BENCH_JSON"):
        parse_wrk("Running 1s test @ http://x\n  0 requests in 1.00s\n")


def test_binary_bodies_are_well_formed(tmp_path: Path) -> None:
    rows = {"iris": np.ones((10, 4), np.float32), "hgb32": np.ones((10, 32), np.float32)}
    bodies = bench.make_bodies(tmp_path, rows)
    body = bodies[("100k-binary", "v2")]
    raw = body.path.read_bytes()
    header = json.loads(raw[: body.header_length])
    (tensor,) = header["inputs"]
    assert tensor["shape"] == [100_000, 4] and tensor["datatype"] == "FP32"
    assert len(raw) - body.header_length == tensor["parameters"]["binary_data_size"] == 100_000 * 4 * 4
    assert body.content_type == "application/octet-stream"
    flask = json.loads(bodies[("1k-c4", "flask")].path.read_bytes())
    assert np.asarray(flask["instances"]).shape == (1000, 4)
    v2 = json.loads(bodies[("hgb-1row-c16", "v2")].path.read_bytes())
    assert v2["inputs"][0]["shape"] == [1, 32] and len(v2["inputs"][0]["data"]) == 32


def test_goals_are_computed_from_the_table() -> None:
    def row(rps: float, mean: float = 1.0, p99: float = 1.0) -> dict:
        return {"rps": rps, "rps_min": rps, "rps_max": rps, "p50_ms": 1.0, "p99_ms": p99, "mean_ms": mean,
                "errors": 0, "rounds": 1}

    data = {
        "results": {
            "1row-c1": {"pipeserve-onnx": row(5000, p99=1.5), "raw-sklearn": row(4000)},
            "1row-c16": {"pipeserve-onnx": row(6000), "kserve": row(1000), "raw-sklearn": row(7000)},
            "1k-c4": {"pipeserve-onnx": row(400), "kserve": row(100)},
            "100k-json": {"kserve": row(2, mean=500.0)},
            "100k-binary": {"pipeserve-onnx": row(150, mean=10.0)},
        },
        "servers": {"pipeserve-onnx": {"startup_s": 0.5, "idle_rss_mb": 200.0}},
    }
    got = {goal.split(" (")[0]: (measured, ok) for goal, measured, ok in bench.goals(data)}
    assert got["≥ 3× KServe's throughput at 1 row, c16"] == ("6.0×", True)
    assert got["≥ 5× KServe's throughput at 1,000 rows, c4"] == ("4.0×", False)
    assert got["100k rows: pipeserve binary ≥ 5× faster than KServe JSON"] == ("50.0×", True)
    assert got["p99 ≤ 2 ms at 1 row, c1"] == ("1.50 ms", True)
    assert got["≤ 150 MB RSS idle"] == ("200 MiB", False)
    assert bench.goals({"results": {}, "servers": {}})[0][2] is None  # not measured is not "no"


@needs_wrk
@pytest.mark.slow
def test_wrk_against_the_null_server(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = Server("null", [sys.executable, str(APPS_DIR / "null_asgi.py"), "--port", str(port)],
                    f"{base}/ready", tmp_path / "null.log")
    server.start(timeout=30)
    assert server.base_url == base
    try:
        body = tmp_path / "body.json"
        body.write_text('{"inputs": []}')
        res = run_wrk(f"{base}/v2/models/x/infer", Body(body), connections=2, duration=1)
        binary = tmp_path / "body.bin"
        binary.write_bytes(b'{"inputs": []}' + bytes(range(256)))
        res_bin = run_wrk(f"{base}/x", Body(binary, "application/octet-stream", 14), connections=1, duration=1)
        assert server.rss_mb() > 0
    finally:
        server.stop()
    assert server.startup_s is not None and server.proc.returncode is not None
    for r in (res, res_bin):
        assert r.requests > 0 and r.errors == 0 and 0 < r.p50_us <= r.p99_us


@needs_wrk
@pytest.mark.slow
def test_one_tiny_end_to_end_run(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    code = bench.main(["--servers", "pipeserve-onnx,null", "--workloads", "1row-c1", "--rounds", "1",
                       "--duration", "1", "--warmup", "1", "--work-dir", str(tmp_path / "work"), "--out", str(out)])
    assert code == 0
    text = out.read_text()
    assert "### iris · 1 row · c1" in text
    assert "| pipeserve-onnx |" in text and "| null |" in text
    assert "| kserve | did not run" not in text  # not selected: not reported as a failure
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["results"]["1row-c1"]["pipeserve-onnx"]["errors"] == 0
    assert data["servers"]["pipeserve-onnx"]["startup_s"] > 0


def test_a_server_that_does_not_start_is_a_bench_error(tmp_path: Path) -> None:
    server = Server("broken", [sys.executable, "-c", "raise SystemExit(3)"], "http://127.0.0.1:1/", tmp_path / "b.log")
    with pytest.raises(BenchError, match=r"^broken: .* exited with code 3"):
        server.start(timeout=10)
