"""Run ONNX models in another ONNX Runtime (this file runs in that runtime's own venv).

usage: python ort_predict.py JOBS.json OUT_DIR
JOBS.json is a list of {"id", "onnx", "inputs" (.npy)}; for each job this writes OUT_DIR/<id>.npz
with the outputs by name, or OUT_DIR/<id>.error with the load or run error. Standard library,
numpy and onnxruntime only.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort


def main(jobs_path: str, out_dir: str) -> None:
    out = Path(out_dir)
    for job in json.loads(Path(jobs_path).read_text()):
        try:
            session = ort.InferenceSession(job["onnx"], providers=["CPUExecutionProvider"])
            names = [o.name for o in session.get_outputs()]
            results = session.run(names, {"input": np.load(job["inputs"])})
        except Exception as exc:  # the error text is the result
            (out / f"{job['id']}.error").write_text(f"{type(exc).__name__}: {exc}")
            continue
        # String labels come back as object arrays: store them as fixed-width text (no pickle).
        arrays = {n: r.astype(str) if r.dtype == object else r for n, r in zip(names, results, strict=True)}
        np.savez(out / f"{job['id']}.npz", **arrays)
    print(ort.__version__)


if __name__ == "__main__":
    main(*sys.argv[1:])
