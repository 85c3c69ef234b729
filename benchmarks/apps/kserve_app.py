"""The KServe baseline: KServe 0.21's ModelServer with a plain scikit-learn ``kserve.Model``.

This is what a user would otherwise write (KServe docs' custom-model pattern): ``load()`` loads the
estimator, ``predict()`` uses ``get_predict_input`` / ``get_predict_response``. The model
advertises its signature (``input-0`` FP32 [-1, F], ``output-0``) like a careful user would;
``<name>-nometa`` is the same model without that override (KServe's default: empty metadata).

KServe hard-codes its bind addresses (REST 0.0.0.0, gRPC [::]); this script patches uvicorn.Config
and grpc.aio.server so both listen on ``--host`` only (127.0.0.1 by default).

    python benchmarks/apps/kserve_app.py REPO --http-port 17080 --grpc-port 17081
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _bind_loopback(host: str) -> None:
    import grpc.aio
    import uvicorn

    class _Config(uvicorn.Config):
        def __init__(self, *args, **kwargs):
            kwargs["host"] = host
            super().__init__(*args, **kwargs)

    uvicorn.Config = _Config  # kserve looks it up as uvicorn.Config at construction time

    real_server = grpc.aio.server

    def _server(*args, **kwargs):
        server = real_server(*args, **kwargs)
        add = server.add_insecure_port
        server.add_insecure_port = lambda addr: add(addr.replace("[::]", host))
        return server

    grpc.aio.server = _server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", help="pipeserve model directory or repository")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    opts = parser.parse_args()
    # kserve.model_server parses sys.argv at import time: give it nothing of ours.
    sys.argv = sys.argv[:1]
    _bind_loopback(opts.host)

    import kserve
    import numpy as np
    from common import load_estimators
    from kserve.utils.utils import from_np_dtype, get_predict_input, get_predict_response

    class SKLearnModel(kserve.Model):
        def __init__(self, name, estimator, n_features, advertise=True):
            super().__init__(name)
            self.estimator = estimator
            self.n_features = n_features
            self.advertise = advertise

        def load(self) -> bool:
            self.ready = True
            return self.ready

        def get_input_types(self):
            if not self.advertise:
                return []
            return [{"name": "input-0", "datatype": "FP32", "shape": [-1, self.n_features]}]

        def get_output_types(self):
            if not self.advertise:
                return []
            sample = self.estimator.predict(np.zeros((1, self.n_features), dtype=np.float32))
            return [{"name": "output-0", "datatype": from_np_dtype(sample.dtype), "shape": [-1]}]

        def predict(self, payload, headers=None):
            features = get_predict_input(payload)
            result = self.estimator.predict(features)
            return get_predict_response(payload, result, self.name)

    models = []
    for name, (estimator, card) in load_estimators(opts.repo).items():
        n_features = int(card["inputs"][0]["shape"][-1])
        models.append(SKLearnModel(name, estimator, n_features))
        models.append(SKLearnModel(f"{name}-nometa", estimator, n_features, advertise=False))
    for m in models:
        m.load()
    # KServe's defaults (per-request latency logging included): the server users would run.
    server = kserve.ModelServer(http_port=opts.http_port, grpc_port=opts.grpc_port)
    server.start(models)


if __name__ == "__main__":
    main()
