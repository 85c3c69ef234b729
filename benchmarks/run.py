"""`make bench`: pipeserve against KServe and simple baselines, side by side, on loopback.

Servers (all up at once, each on its own free 127.0.0.1 port, one process each; pipeserve binds
port 0 and says which port it got, the others take a port chosen beforehand):

* ``pipeserve-onnx``    ``pipeserve serve REPO --backend onnx``
* ``pipeserve-sklearn`` ``pipeserve serve REPO --backend sklearn`` (skops-loaded scikit-learn)
* ``kserve``            KServe 0.21 ``ModelServer`` + a plain sklearn ``kserve.Model`` (the baseline)
* ``raw-sklearn``       a minimal hand-written raw ASGI + orjson + scikit-learn v2 server
* ``flask``             the tutorial-style Flask ``/predict`` app (``app.run()``)
* ``null``              a raw ASGI app answering a fixed response (the HTTP ceiling)

Each workload runs on every server that speaks it, in interleaved rounds (A B C D E F, A B C D E
F, ...); the tables report medians over the rounds. wrk drives the load (one thread, POST bodies
from ``wrk/post.lua``). Results go to ``benchmarks/RESULTS.md`` (and ``RESULTS.json``).

    python -m benchmarks.run            # full run: 5 rounds, about 7 minutes on 2 cores
    python -m benchmarks.run --quick    # one short round, about a minute
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import BenchError, Body, Server, WrkResult, run_wrk, wrk_version
from pipeserve.localserver import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
APPS = HERE / "apps"
FLASK_PINS = ("flask==3.1.3", "werkzeug==3.1.9")
SERVERS = ("pipeserve-onnx", "pipeserve-sklearn", "kserve", "raw-sklearn", "flask", "null")
BASELINE, CEILING = "kserve", "null"


@dataclass(frozen=True)
class Workload:
    """One request shape at one concurrency.

    Args:
        key: Short id.
        title: Row label in RESULTS.md.
        model: ``iris`` (LogisticRegression, 4 features) or ``hgb32`` (HistGradientBoosting, 32).
        rows: Rows per request.
        connections: wrk connections (concurrent requests).
        binary: Use the v2 binary tensor extension (only servers that implement it).
        duration_factor: Multiplies the base duration (large bodies need longer runs).
    """

    key: str
    title: str
    model: str
    rows: int
    connections: int
    binary: bool = False
    duration_factor: float = 1.0


WORKLOADS = (
    Workload("1row-c1", "iris · 1 row · c1", "iris", 1, 1),
    Workload("1row-c16", "iris · 1 row · c16", "iris", 1, 16),
    Workload("1row-c64", "iris · 1 row · c64", "iris", 1, 64),
    Workload("1k-c4", "iris · 1,000 rows · c4", "iris", 1000, 4),
    Workload("100k-json", "iris · 100,000 rows · JSON · c1", "iris", 100_000, 1, duration_factor=2),
    Workload("100k-binary", "iris · 100,000 rows · binary · c1", "iris", 100_000, 1, binary=True, duration_factor=2),
    Workload("hgb-1row-c16", "HGB 32 features · 1 row · c16", "hgb32", 1, 16),
    Workload("hgb-1k-c4", "HGB 32 features · 1,000 rows · c4", "hgb32", 1000, 4),
)
# Servers that implement the v2 binary tensor extension.
BINARY_SERVERS = {"pipeserve-onnx", "pipeserve-sklearn", "kserve", "null"}


# -- set-up ------------------------------------------------------------------------------------


def ensure_tools() -> None:
    """Install what the benchmark needs and the project does not: wrk (apt) and Flask (pip)."""
    if shutil.which("wrk") is None:
        print("installing wrk (apt-get install -y wrk) ...", flush=True)
        cmd = ["apt-get", "install", "-y", "-q", "wrk"]
        if subprocess.run(cmd, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True)
            subprocess.run(cmd, check=True, capture_output=True)
    try:
        importlib.metadata.version("flask")
    except importlib.metadata.PackageNotFoundError:
        print(f"installing {' '.join(FLASK_PINS)} ...", flush=True)
        pip = [sys.executable, "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt")]
        subprocess.run([*pip, *FLASK_PINS], check=True)


def build_models(repo: Path) -> dict[str, np.ndarray]:
    """Package iris (LogisticRegression) and hgb32 (HistGradientBoosting on 32 synthetic features)
    into ``repo`` with pipeserve's own packaging; return feature rows to send for each model."""
    import pandas as pd
    from sklearn.datasets import make_classification

    from pipeserve.workflow import fit_and_package

    X, y = make_classification(n_samples=4000, n_features=32, n_informative=16, random_state=0)
    frame = pd.DataFrame(X.astype(np.float32), columns=[f"f{i:02d}" for i in range(32)])
    frame["target"] = y
    csv = repo.parent / "hgb32.csv"
    repo.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv, index=False)
    iris = fit_and_package("iris", repo, name="iris")
    hgb = fit_and_package(str(csv), repo, target="target", estimator="hist_gradient_boosting", name="hgb32")
    return {"iris": iris.split.X_test.astype(np.float32), "hgb32": hgb.split.X_test.astype(np.float32)}


def make_bodies(workdir: Path, rows_by_model: dict[str, np.ndarray]) -> dict[tuple[str, str], Body]:
    """Write every request body once: keyed by (workload key, dialect)."""
    rng = np.random.default_rng(0)
    bodies: dict[tuple[str, str], Body] = {}
    (workdir / "bodies").mkdir(parents=True, exist_ok=True)
    for w in WORKLOADS:
        pool = rows_by_model[w.model]
        X = pool[rng.integers(0, len(pool), size=w.rows)]
        shape = list(X.shape)

        def put(dialect: str, payload: bytes, key: str = w.key, **kw: Any) -> None:
            path = workdir / "bodies" / f"{key}.{dialect}"
            path.write_bytes(payload)
            bodies[(key, dialect)] = Body(path, **kw)

        tensor = {"name": "input", "datatype": "FP32", "shape": shape}
        if w.binary:
            raw = X.tobytes()
            # pipeserve: ask for the label only, in binary (the one output every server returns).
            header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}],
                                 "outputs": [{"name": "label", "parameters": {"binary_data": True}}]}).encode()
            put("v2", header + raw, content_type="application/octet-stream", header_length=len(header))
            # KServe's model answers "output-0": ask for every output in binary.
            header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}],
                                 "parameters": {"binary_data_output": True}}).encode()
            put("kserve", header + raw, content_type="application/octet-stream", header_length=len(header))
        else:
            data = X.ravel().tolist()
            put("v2", json.dumps({"inputs": [{**tensor, "data": data}], "outputs": [{"name": "label"}]}).encode())
            put("kserve", json.dumps({"inputs": [{**tensor, "data": data}]}).encode())
            put("flask", json.dumps({"instances": X.tolist()}).encode())
    return bodies


def make_servers(repo: Path, workdir: Path) -> dict[str, Server]:
    """The server processes, not started yet."""
    py = sys.executable
    cli = shutil.which("pipeserve", path=str(Path(py).parent)) or shutil.which("pipeserve")
    pipeserve = [cli] if cli else [py, "-m", "pipeserve.cli.main"]
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    servers = {}
    for name in SERVERS:
        log = logs / f"{name}.log"
        if name.startswith("pipeserve-"):
            cmd = [*pipeserve, "serve", str(repo), "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "auto",
                   "--backend", name.split("-", 1)[1], "--log-level", "warning"]
            servers[name] = Server(name, cmd, None, log)  # ready line: the ports it bound
            continue
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        ready = f"{base}/v2/health/ready"
        if name == "kserve":
            cmd = [py, str(APPS / "kserve_app.py"), str(repo), "--http-port", str(port),
                   "--grpc-port", str(free_port())]
        elif name == "raw-sklearn":
            cmd = [py, str(APPS / "raw_sklearn.py"), str(repo), "--port", str(port)]
        elif name == "flask":
            cmd = [py, str(APPS / "flask_app.py"), str(repo), "--port", str(port)]
            ready = f"{base}/health"
        else:
            cmd = [py, str(APPS / "null_asgi.py"), "--port", str(port)]
        servers[name] = Server(name, cmd, ready, log)
    return servers


def target(server: Server, w: Workload, bodies: dict[tuple[str, str], Body]) -> tuple[str, Body] | None:
    """URL and body of workload ``w`` for ``server``, or None when the server cannot take it."""
    if w.binary and server.name not in BINARY_SERVERS:
        return None
    if server.name == "flask":
        return f"{server.base_url}/predict?model={w.model}", bodies[(w.key, "flask")]
    dialect = "kserve" if server.name == "kserve" else "v2"
    return f"{server.base_url}/v2/models/{w.model}/infer", bodies[(w.key, dialect)]


def check_answers(servers: dict[str, Server], bodies: dict[tuple[str, str], Body]) -> dict[str, str]:
    """Send each 1-row body once; return {server: problem} for servers that do not answer 200."""
    import urllib.error
    import urllib.request

    problems = {}
    w = WORKLOADS[0]
    for name, server in servers.items():
        url, body = target(server, w, bodies)  # type: ignore[misc]
        req = urllib.request.Request(url, data=body.path.read_bytes(), headers={"Content-Type": body.content_type})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            problems[name] = f"HTTP {exc.code}: {exc.read()[:300].decode(errors='replace')}"
        except OSError as exc:
            problems[name] = str(exc)
    return problems


# -- the run -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_start = os.getloadavg()[0]
    if load_start > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {load_start:.1f} on {os.cpu_count()} CPUs before starting: other jobs will "
              "add noise (RESULTS.md records it)", flush=True)
    workdir = Path(args.work_dir)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    ensure_tools()
    print("packaging models ...", flush=True)
    rows = build_models(workdir / "repo")
    bodies = make_bodies(workdir, rows)
    servers = {k: v for k, v in make_servers(workdir / "repo", workdir).items() if k in args.servers}
    workloads = [w for w in WORKLOADS if w.key in args.workloads]
    failed: dict[str, str] = {}
    started: dict[str, Server] = {}
    results: dict[str, dict[str, list[WrkResult]]] = {w.key: {} for w in workloads}
    try:
        for name, server in servers.items():  # one at a time: start-up is timed uncontended
            try:
                server.start()
            except BenchError as exc:
                failed[name] = str(exc).splitlines()[0]
                print(f"  {name}: did not start: {failed[name]}", flush=True)
                continue
            time.sleep(1.0)
            server.idle_rss_mb = server.rss_mb()
            started[name] = server
            print(f"  {name}: ready in {server.startup_s:.2f} s, idle RSS {server.idle_rss_mb:.0f} MiB", flush=True)
        for name, problem in check_answers(started, bodies).items():
            failed[name] = f"wrong answer to a valid request: {problem}"
            print(f"  {name}: {failed[name]}", flush=True)
            started.pop(name).stop()
        # Warm-up: JIT-free Python still has caches, pools and first-call costs to settle.
        for server in started.values():
            url, body = target(server, workloads[0], bodies)  # type: ignore[misc]
            run_wrk(url, body, connections=4, duration=args.warmup)
        for rnd in range(args.rounds):
            for w in workloads:
                for name, server in started.items():
                    spec = target(server, w, bodies)
                    if spec is None:
                        continue
                    duration = args.duration * w.duration_factor
                    res = run_wrk(spec[0], spec[1], connections=w.connections, duration=duration)
                    results[w.key].setdefault(name, []).append(res)
                    print(f"  round {rnd + 1}/{args.rounds} {w.key:<13} {name:<18} {res.rps:9.1f} req/s "
                          f"p50 {res.p50_us / 1000:7.2f} ms p99 {res.p99_us / 1000:7.2f} ms"
                          + (f"  {res.errors} errors" if res.errors else ""), flush=True)
        loaded_rss = {name: s.rss_mb() for name, s in started.items()}
    finally:
        for server in servers.values():
            server.stop()
    data = summarize(args, servers, started, failed, workloads, results, loaded_rss)
    data["machine"]["loadavg_1m_start_end"] = [round(load_start, 2), round(os.getloadavg()[0], 2)]
    return data


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def summarize(args, servers, started, failed, workloads, results, loaded_rss) -> dict[str, Any]:
    table = {}
    for w in workloads:
        row = {}
        for name, runs in results[w.key].items():
            row[name] = {
                "rps": _median([r.rps for r in runs]),
                "rps_min": min(r.rps for r in runs),
                "rps_max": max(r.rps for r in runs),
                "p50_ms": _median([r.p50_us / 1000 for r in runs]),
                "p99_ms": _median([r.p99_us / 1000 for r in runs]),
                "mean_ms": _median([r.mean_us / 1000 for r in runs]),
                "errors": sum(r.errors for r in runs),
                "rounds": len(runs),
            }
        table[w.key] = row
    return {
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.run " + " ".join(sys.argv[1:]),
        "settings": {"rounds": args.rounds, "duration_s": args.duration, "warmup_s": args.warmup},
        "machine": machine(),
        "versions": versions(),
        "workloads": [w.__dict__ for w in workloads],
        "results": table,
        "servers": {
            name: {
                "startup_s": s.startup_s,
                "idle_rss_mb": s.idle_rss_mb,
                "loaded_rss_mb": loaded_rss.get(name),
                "failed": failed.get(name),
                "cmd": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(s.cmd)),
            }
            for name, s in servers.items()
        },
    }


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        mem_kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    except (OSError, StopIteration, ValueError):
        mem_kb = 0
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def versions() -> dict[str, str]:
    out = {}
    for dist in ("pipeserve", "kserve", "scikit-learn", "onnxruntime", "numpy", "uvicorn", "uvloop",
                 "httptools", "orjson", "fastapi", "flask", "werkzeug", "tritonclient"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    out["wrk"] = wrk_version()
    return out


# -- RESULTS.md --------------------------------------------------------------------------------


def goals(data: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(goal, measured, met?) for each goal of issue 3; met is None when not measured."""
    res, srv = data["results"], data["servers"]

    def get(wkey: str, server: str, field: str = "rps") -> float | None:
        value = res.get(wkey, {}).get(server, {}).get(field)
        return None if value is None or value != value else value

    def ratio(wkey: str, a: str, b: str, field: str = "rps") -> float | None:
        x, y = get(wkey, a, field), get(wkey, b, field)
        return x / y if x and y else None

    out: list[tuple[str, str, bool | None]] = []

    def add(goal: str, value: float | None, fmt: str, ok: bool | None) -> None:
        out.append((goal, "not measured" if value is None else fmt.format(value), None if value is None else ok))

    r = ratio("1row-c16", "pipeserve-onnx", BASELINE)
    add("≥ 3× KServe's throughput at 1 row, c16 (ONNX backend)", r, "{:.1f}×", r is not None and r >= 3)
    r = ratio("1k-c4", "pipeserve-onnx", BASELINE)
    add("≥ 5× KServe's throughput at 1,000 rows, c4 (ONNX backend)", r, "{:.1f}×", r is not None and r >= 5)
    a, b = get("100k-binary", "pipeserve-onnx", "mean_ms"), get("100k-json", BASELINE, "mean_ms")
    r = b / a if a and b else None
    add("100k rows: pipeserve binary ≥ 5× faster than KServe JSON (mean latency)", r, "{:.1f}×",
        r is not None and r >= 5)
    p99 = get("1row-c1", "pipeserve-onnx", "p99_ms")
    add("p99 ≤ 2 ms at 1 row, c1 (ONNX backend)", p99, "{:.2f} ms", p99 is not None and p99 <= 2)
    ready = srv.get("pipeserve-onnx", {}).get("startup_s")
    add("ready ≤ 2 s after spawn (ONNX backend)", ready, "{:.2f} s", ready is not None and ready <= 2)
    rss = srv.get("pipeserve-onnx", {}).get("idle_rss_mb")
    add("≤ 150 MB RSS idle (ONNX backend, both models loaded)", rss, "{:.0f} MiB",
        rss is not None and rss * 1.048576 <= 150)
    for wkey in ("1row-c1", "1row-c16", "1row-c64"):
        r = ratio(wkey, "pipeserve-onnx", "raw-sklearn")
        add(f"faster than the minimal hand-written sklearn server ({wkey})", r, "{:.2f}×", r is not None and r > 1)
    return out


def render(data: dict[str, Any]) -> str:
    m, v = data["machine"], data["versions"]
    lines = [
        "# Benchmark results",
        "",
        f"Generated {data['generated']} by `{data['command'].strip()}` (`make bench`). "
        f"Medians of {data['settings']['rounds']} interleaved round(s); "
        f"{data['settings']['duration_s']:g} s per run (×2 for 100k rows), wrk with 1 thread, loopback.",
        "",
        f"**Machine:** {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}. Servers and wrk share the CPUs; one server process each. "
        f"1-minute load average before / after the run: {' / '.join(map(str, m.get('loadavg_1m_start_end', [])))} "
        "(anything else running on the machine shows up here and in the numbers).",
        "",
        "**Versions:** " + ", ".join(f"{k} {val}" for k, val in v.items()),
        "",
        "## Goals (issue 3)",
        "",
        "| goal | measured | met |",
        "| --- | --- | --- |",
    ]
    for goal, measured, ok in goals(data):
        lines.append(f"| {goal} | {measured} | {'—' if ok is None else ('yes' if ok else '**no**')} |")
    lines += ["", "## Throughput and latency", "",
              "× KServe and × ceiling compare req/s with the KServe baseline and with the null server on the same "
              "workload; "
              "spread is half the range of req/s over the rounds, relative to the median.", ""]
    for w in data["workloads"]:
        row = data["results"].get(w["key"], {})
        if not row:
            continue
        base, ceil = row.get(BASELINE, {}).get("rps"), row.get(CEILING, {}).get("rps")
        lines += [f"### {w['title']}", "",
                  "| server | req/s | spread | p50 ms | p99 ms | × KServe | × ceiling | errors |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name in SERVERS:
            if name not in row:
                continue
            r = row[name]
            xk = f"{r['rps'] / base:.2f}" if base else "—"
            xc = f"{r['rps'] / ceil:.2f}" if ceil else "—"
            spread = f"±{50 * (r['rps_max'] - r['rps_min']) / r['rps']:.0f}%" if r["rps"] else "—"
            lines.append(f"| {name} | {r['rps']:,.1f} | {spread} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {xk} | "
                         f"{xc} | {r['errors']} |")
        lines.append("")
    lines += ["## Start-up and memory", "",
              "Start-up: spawn → first 200 from the readiness route (both models loaded). RSS: the process tree, "
              "1 s after ready (idle) and after the last round (loaded).", "",
              "| server | spawn → ready s | idle RSS MiB | RSS after load MiB | command |",
              "| --- | ---: | ---: | ---: | --- |"]
    for name, s in data["servers"].items():
        if s["failed"]:
            lines.append(f"| {name} | did not run: {s['failed'][:160]} | | | `{s['cmd']}` |")
            continue
        fmt = lambda x, f: "—" if x is None else f.format(x)  # noqa: E731
        lines.append(f"| {name} | {fmt(s['startup_s'], '{:.2f}')} | {fmt(s['idle_rss_mb'], '{:.0f}')} | "
                     f"{fmt(s['loaded_rss_mb'], '{:.0f}')} | `{s['cmd']}` |")
    lines += ["", "## What is compared", "",
              "* **pipeserve-onnx / pipeserve-sklearn**: `pipeserve serve` on the packaged repository (iris + hgb32), "
              "one worker, `--backend onnx` or `--backend sklearn`; requests ask for the `label` output only.",
              "* **kserve**: KServe 0.21 `ModelServer` with a `kserve.Model` calling the same fitted estimator "
              "(`get_predict_input` → `predict` → `get_predict_response`), KServe's defaults (one uvicorn worker, "
              "per-request latency logging on), bound to 127.0.0.1.",
              "* **raw-sklearn**: the minimal hand-written server (raw ASGI on uvicorn + uvloop + httptools, orjson, "
              "scikit-learn `predict`, no validation): the bar the issue quotes.",
              "* **flask**: the tutorial-style Flask app (`POST /predict` with `{\"instances\": ...}`, `app.run()`); "
              "no binary support.",
              "* **null**: raw ASGI returning a fixed response after reading the body: the HTTP ceiling.",
              "",
              "Every server serves the same fitted estimators (pipeserve's skops file; ONNX for pipeserve-onnx). "
              "Bodies are generated once (`benchmarks/.work/bodies/`); wrk posts them with `benchmarks/wrk/post.lua`.",
              "",
              "Reading the HGB rows: scikit-learn's HistGradientBoosting `predict` opens an OpenMP region on every "
              "core per call. The baselines run it as users would (no thread limits); on a small machine shared with "
              "wrk its spin-waiting threads fight for the CPUs, which makes their numbers erratic, and very low when "
              "other jobs load the machine (see the spread column and the load average above). pipeserve's "
              "scikit-learn backend limits native thread pools to its share of the cores "
              "(threadpoolctl).",
              ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="One round of 1 s runs (about a minute): a smoke run.")
    parser.add_argument("--rounds", type=int, default=5, help="Interleaved rounds (default 5).")
    parser.add_argument("--duration", type=float, default=1.0,
                        help="Whole seconds per wrk run (default 1; ×2 for 100k rows).")
    parser.add_argument("--warmup", type=float, default=1.0, help="Seconds of warm-up per server (default 1).")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"Comma-separated subset of: {','.join(SERVERS)}.")
    parser.add_argument("--workloads", default=",".join(w.key for w in WORKLOADS),
                        help=f"Comma-separated subset of: {','.join(w.key for w in WORKLOADS)}.")
    parser.add_argument("--out", type=Path,
                        help="Markdown report (default benchmarks/RESULTS.md; with --quick, WORK_DIR/RESULTS.md).")
    parser.add_argument("--work-dir", default=str(HERE / ".work"), help="Scratch folder for models, bodies and logs.")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 1.0, 1.0
    if args.out is None:
        args.out = Path(args.work_dir) / "RESULTS.md" if args.quick else HERE / "RESULTS.md"
    args.servers = [s for s in args.servers.split(",") if s]
    args.workloads = [w for w in args.workloads.split(",") if w]
    unknown = sorted(set(args.servers) - set(SERVERS)) + sorted(set(args.workloads) - {w.key for w in WORKLOADS})
    if unknown:
        parser.error(f"unknown server or workload: {', '.join(unknown)}")
    t0 = time.perf_counter()
    data = run(args)
    data["wall_s"] = round(time.perf_counter() - t0, 1)
    args.out.write_text(render(data) + f"\nWhole run: {data['wall_s']:.0f} s.\n")
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"wrote {args.out} ({data['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
