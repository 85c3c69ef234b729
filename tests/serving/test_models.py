"""Other model shapes: string class labels (BYTES outputs) and a NaN-tolerant estimator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from serving_support import connection, start_server
from sklearn.datasets import load_iris

from pipeserve.localserver import LocalServer
from pipeserve.packaging import load_estimator
from pipeserve.workflow import fit_and_package

# skl2onnx's HistGradientBoosting converter trips an onnx deprecation while packaging (not ours).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:onnx.*")


@pytest.fixture(scope="module")
def species_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Iris with string targets ("setosa", ...) and hist_gradient_boosting (accepts NaN)."""
    import pandas as pd

    tmp = tmp_path_factory.mktemp("species")
    iris = load_iris(as_frame=True)
    frame = iris.frame.drop(columns="target")
    frame["species"] = np.array(iris.target_names)[iris.target]
    csv = tmp / "species.csv"
    pd.DataFrame(frame).to_csv(csv, index=False)
    result = fit_and_package(str(csv), tmp / "repo", target="species", task="classification",
                             estimator="hist_gradient_boosting", params={"max_iter": 20}, name="species")
    return result.model_dir.parent


@pytest.fixture(scope="module")
def species_server(species_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server = start_server(species_repo, tmp_path_factory.mktemp("species-server"))
    yield server
    assert server.stop() == 0, server.log()


X = np.array([[5.1, 3.5, 1.4, 0.2], [6.8, 2.8, 4.8, 1.4], [7.7, 3.0, 6.1, 2.3]], dtype=np.float32)


def test_bytes_labels_over_http_json_and_binary(species_server, species_repo) -> None:
    est = load_estimator(species_repo / "species" / "1" / "model.skops")
    expected = est.predict(X).astype(str).tolist()
    client = thttp.InferenceServerClient(url=species_server.address)
    meta = client.get_model_metadata("species")
    assert meta["outputs"][0] == {"name": "label", "datatype": "BYTES", "shape": [-1]}
    for binary in (False, True):
        inp = thttp.InferInput("input", list(X.shape), "FP32")
        inp.set_data_from_numpy(X, binary_data=binary)
        result = client.infer("species", [inp], outputs=[thttp.InferRequestedOutput("label", binary_data=binary)])
        got = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").tolist()]
        assert got == expected, binary


def test_bytes_labels_over_grpc(species_server, species_repo) -> None:
    est = load_estimator(species_repo / "species" / "1" / "model.skops")
    client = tgrpc.InferenceServerClient(url=species_server.grpc_url)
    inp = tgrpc.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    result = client.infer("species", [inp])
    assert [v.decode() for v in result.as_numpy("label").tolist()] == est.predict(X).astype(str).tolist()


def test_nan_accepted_where_the_estimator_takes_it(species_server) -> None:
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": 16}}
    body = json.dumps({"inputs": [tensor]}).encode()
    raw = np.array([[np.nan, 3.0, 1.4, 0.2]], dtype=np.float32).tobytes()
    conn = connection(species_server)
    conn.request("POST", "/v2/models/species/infer", body=body + raw,
                 headers={"Inference-Header-Content-Length": str(len(body))})
    resp = conn.getresponse()
    payload = json.loads(resp.read())
    assert resp.status == 200, payload
    assert payload["outputs"][0]["data"][0] in {"setosa", "versicolor", "virginica"}
    # Infinity is still refused: NaN means "missing", inf is a broken client.
    raw_inf = np.array([[np.inf, 3.0, 1.4, 0.2]], dtype=np.float32).tobytes()
    conn.request("POST", "/v2/models/species/infer", body=body + raw_inf,
                 headers={"Inference-Header-Content-Length": str(len(body))})
    resp = conn.getresponse()
    payload = json.loads(resp.read())
    assert resp.status == 400 and "infinity" in payload["error"], payload
    conn.close()


def test_v1_predict_returns_strings(species_server) -> None:
    conn = connection(species_server)
    conn.request("POST", "/v1/models/species:predict", body=json.dumps({"instances": X.tolist()}),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    predictions = json.loads(resp.read())["predictions"]
    assert resp.status == 200 and len(predictions) == 3 and set(predictions) <= {"setosa", "versicolor", "virginica"}
    conn.close()
