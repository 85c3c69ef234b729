"""pipeserve.client.Predictor against real v2 servers: `pipeserve serve` and KServe 0.21's ModelServer.

Both servers run as real processes on free loopback ports and serve the same fitted estimators
(KServe through the plain sklearn ``kserve.Model`` in benchmarks/apps/kserve_app.py, started by
tests/interop.py). Every transport the client offers is exercised: REST JSON, REST binary, gRPC.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from interop import kserve_server as start_kserve

from pipeserve.client import ModelMetadata, Predictor, ServerUnreachable, TensorMetadata
from pipeserve.errors import InferenceError, InvalidInput, NotFound, PipeserveError, UserError
from pipeserve.localserver import LocalServer, free_port
from pipeserve.transports import Arrays, GrpcTransport, RestTransport

TRANSPORTS = ["rest-json", "rest-binary", "grpc"]


@pytest.fixture(scope="module")
def repo(iris_repo: Path, diabetes_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One repository with iris (classifier) and diabetes (regressor)."""
    out = tmp_path_factory.mktemp("client-repo")
    shutil.copytree(iris_repo / "iris", out / "iris")
    shutil.copytree(diabetes_repo / "diabetes", out / "diabetes")
    return out


@pytest.fixture(scope="module")
def pipeserve_server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`pipeserve serve` (REST + gRPC); yields (rest url, grpc address)."""
    log = tmp_path_factory.mktemp("logs") / "pipeserve.log"
    with LocalServer.serve(repo, "--log-level", "warning", grpc=True, log_path=log) as server:
        yield server.url, server.grpc_url


@pytest.fixture(scope="module")
def kserve_server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """KServe 0.21 ModelServer with a sklearn kserve.Model per model (+ '<name>-nometa' variants)."""
    with start_kserve(repo, tmp_path_factory.mktemp("logs") / "kserve.log") as server:
        yield server.url, server.grpc_url


def predictor(urls: tuple[str, str], transport: str, model: str | None) -> Predictor:
    rest, grpc = urls
    if transport == "grpc":
        return Predictor(grpc, model, grpc=True, timeout=20)
    return Predictor(rest, model, binary=transport == "rest-binary", timeout=20)


@pytest.fixture(scope="module")
def estimators(iris_fit, diabetes_fit):  # type: ignore[no-untyped-def]
    return {"iris": iris_fit.model, "diabetes": diabetes_fit.model}


# -- pipeserve serve ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_pipeserve_health_and_metadata(pipeserve_server, transport) -> None:
    with predictor(pipeserve_server, transport, "iris") as p:
        assert p.ready() and p.live()
        meta = p.metadata()
    assert isinstance(meta, ModelMetadata) and meta.name == "iris"
    assert meta.inputs == (TensorMetadata("input", "FP32", (-1, 4)),)
    assert [o.name for o in meta.outputs] == ["label", "probabilities"]
    assert meta.outputs[0].datatype == "INT64"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_pipeserve_classifier_parity_with_sklearn(pipeserve_server, transport, iris_split, estimators) -> None:
    X, _y = iris_split
    model = estimators["iris"]
    with predictor(pipeserve_server, transport, "iris") as p:
        labels = p.predict(X)
        outputs = p.infer(X)
        only_proba = p.infer(X, outputs=["probabilities"])
    assert labels.dtype == np.int64 and labels.shape == (len(X),)
    np.testing.assert_array_equal(labels, model.predict(X))
    assert list(outputs) == ["label", "probabilities"]
    np.testing.assert_allclose(outputs["probabilities"], model.predict_proba(X), atol=1e-5)
    assert list(only_proba) == ["probabilities"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_pipeserve_regressor_parity_with_sklearn(pipeserve_server, transport, diabetes_fit) -> None:
    X = diabetes_fit.split.X_test
    with predictor(pipeserve_server, transport, "diabetes") as p:
        got = p.predict(X)
    assert got.dtype == np.float32 and got.shape == (len(X),)
    np.testing.assert_allclose(got, diabetes_fit.model.predict(X), rtol=1e-4, atol=1e-3)


@pytest.fixture(scope="module")
def string_label_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """pipeserve serving a classifier with string classes (BYTES labels)."""
    from sklearn.datasets import load_iris

    from pipeserve.workflow import fit_and_package

    tmp = tmp_path_factory.mktemp("species")
    iris = load_iris(as_frame=True)
    frame = iris.data.copy()
    frame["species"] = iris.target_names[iris.target]
    frame.to_csv(tmp / "species.csv", index=False)
    fit = fit_and_package(str(tmp / "species.csv"), tmp / "repo", target="species", name="species")
    with LocalServer.serve(tmp / "repo", "--log-level", "warning", grpc=True, log_path=tmp / "server.log") as server:
        yield (server.url, server.grpc_url), fit


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_string_labels_are_str_on_every_transport(string_label_server, transport) -> None:
    urls, fit = string_label_server
    X = fit.split.X_test
    with predictor(urls, transport, "species") as p:
        assert p.metadata().outputs[0].datatype == "BYTES"
        labels = p.predict(X)
    assert labels.dtype == np.object_ and all(isinstance(v, str) for v in labels)
    assert labels.tolist() == fit.model.predict(X).tolist()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_one_row_as_a_flat_list_and_python_lists(pipeserve_server, transport, estimators) -> None:
    row = [5.1, 3.5, 1.4, 0.2]
    with predictor(pipeserve_server, transport, "iris") as p:
        assert p.predict(row).tolist() == estimators["iris"].predict(np.array([row], np.float32)).tolist()
        assert p.predict([row, row]).shape == (2,)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[1.0, 2.0, 3.0]], r"expects rows of shape \[N, 4\].*got shape \[1, 3\]"),
        ([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]], "rectangular"),
        ([["a", "b", "c", "d"]], "takes numbers"),
        ([], "non-empty"),
        ([[[1.0, 2.0, 3.0, 4.0]]], "2-D batch"),
    ],
)
def test_rows_that_do_not_fit_are_refused_before_sending(pipeserve_server, transport, rows, message) -> None:
    with predictor(pipeserve_server, transport, "iris") as p, pytest.raises(InvalidInput, match=message):
        p.predict(rows)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_server_rejections_carry_the_servers_message(pipeserve_server, transport) -> None:
    # NaN passes the client's shape/type checks; pipeserve's server refuses it for LogisticRegression.
    # JSON cannot carry NaN at all, so over REST JSON the client refuses it itself.
    with predictor(pipeserve_server, transport, "iris") as p:
        with pytest.raises(InvalidInput) as info:
            p.predict([[np.nan, 1.0, 1.0, 1.0]])
        if transport == "rest-json":
            assert "JSON cannot carry" in str(info.value)
        else:
            assert "HTTP 400" in str(info.value) or "INVALID_ARGUMENT" in str(info.value)
            assert "nan" in str(info.value).lower() or "finite" in str(info.value).lower()
        with pytest.raises(NotFound, match="nope"):
            p.infer([[1.0, 2.0, 3.0, 4.0]], outputs=["nope"])
        # The connection is still good after errors.
        assert p.predict([[5.1, 3.5, 1.4, 0.2]]).shape == (1,)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unknown_model_is_not_found(pipeserve_server, transport) -> None:
    with predictor(pipeserve_server, transport, "no-such-model") as p:
        assert p.ready() is False
        with pytest.raises(NotFound, match="no-such-model"):
            p.predict([[1.0, 2.0, 3.0, 4.0]])


def test_model_discovery_over_rest(pipeserve_server, repo) -> None:
    with Predictor(pipeserve_server[0]) as p, pytest.raises(UserError, match=r"serves 2 models \(diabetes, iris\)"):
        _ = p.model
    # A server with a single model: the name is optional.
    with LocalServer.serve(repo / "iris", "--log-level", "warning") as server, Predictor(server.url) as p:
        assert p.model == "iris"
        assert p.predict([[5.1, 3.5, 1.4, 0.2]]).shape == (1,)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unreachable_server(transport) -> None:
    port = free_port()  # nothing listens there
    urls = (f"http://127.0.0.1:{port}", f"127.0.0.1:{port}")
    with predictor(urls, transport, "iris") as p:
        assert p.ready() is False
        with pytest.raises(ServerUnreachable, match=str(port)) as info:
            p.predict([[1.0, 2.0, 3.0, 4.0]])
    assert info.value.exit_code == 1


def test_bad_urls_are_user_errors() -> None:
    with pytest.raises(UserError, match="URL"):
        Predictor("ftp://example.com/x")
    with pytest.raises(UserError, match="port"):
        Predictor("http://127.0.0.1:notaport")


# -- KServe's ModelServer ----------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_kserve_parity_with_sklearn(kserve_server, transport, iris_split, estimators) -> None:
    X, _y = iris_split
    with predictor(kserve_server, transport, "iris") as p:
        assert p.ready()
        meta = p.metadata()
        assert meta.inputs == (TensorMetadata("input-0", "FP32", (-1, 4)),)
        labels = p.predict(X)
        outputs = p.infer(X)
    np.testing.assert_array_equal(labels, estimators["iris"].predict(X))
    assert list(outputs) == ["output-0"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_kserve_model_without_metadata_uses_the_fallback_input(kserve_server, transport, diabetes_fit) -> None:
    X = diabetes_fit.split.X_test
    with predictor(kserve_server, transport, "diabetes-nometa") as p:
        assert p.metadata().inputs == ()
        got = p.predict(X)
    np.testing.assert_allclose(got, diabetes_fit.model.predict(X), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_kserve_errors_map_to_the_hierarchy(kserve_server, transport) -> None:
    with predictor(kserve_server, transport, "nope") as p, pytest.raises(NotFound):
        p.predict([[1.0, 2.0, 3.0, 4.0]])
    # KServe answers a wrong feature count with a 500 (its bug, see kserve.md §4): InferenceError.
    with predictor(kserve_server, transport, "iris-nometa") as p:
        with pytest.raises(InferenceError) as info:
            p.predict([[1.0, 2.0, 3.0]])
        assert info.value.exit_code == 1
        if transport != "grpc":  # KServe's gRPC says only "Internal server error"
            assert "4 features" in str(info.value)
        assert p.predict([[5.1, 3.5, 1.4, 0.2]]).shape == (1,)


def test_kserve_lists_models_but_several(kserve_server) -> None:
    listed = "diabetes, diabetes-nometa, iris, iris-nometa"
    with Predictor(kserve_server[0]) as p, pytest.raises(UserError, match=listed):
        _ = p.model
    with Predictor(kserve_server[1], grpc=True) as p, pytest.raises(UserError, match="cannot list its models"):
        _ = p.model


def test_every_client_error_is_a_pipeserve_error() -> None:
    for cls in (ServerUnreachable, InvalidInput, NotFound, InferenceError):
        assert issubclass(cls, PipeserveError)


@pytest.mark.parametrize(("message", "expected"), [
    ("Model 'iris' is loading; retry shortly", "ModelNotReady"),
    ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Connection refused",
     "ServerUnreachable"),
])
def test_grpc_unavailable_means_not_ready_unless_the_transport_failed(message, expected):
    from tritonclient.utils import InferenceServerException

    error = GrpcTransport("127.0.0.1:1").error(
        "infer", InferenceServerException(msg=message, status="StatusCode.UNAVAILABLE"))
    assert type(error).__name__ == expected


# -- the transport interface (no server) ----------------------------------------------------------


class FakeTransport:
    """Answers from memory and records what it was asked to send (httpx's MockTransport, in spirit)."""

    url = "fake://server"

    def __init__(self) -> None:
        self.meta = ModelMetadata("iris", "fake", ("1",), (TensorMetadata("input", "FP32", (-1, 4)),),
                                  (TensorMetadata("label", "INT64", (-1,)), TensorMetadata("proba", "FP32", (-1, 3))))
        self.sent: list[tuple[str, str, Arrays, list[str]]] = []
        self.closed = False

    def live(self) -> bool:
        return True

    def ready(self, model: str, version: str) -> bool:
        return model == "iris"

    def metadata(self, model: str, version: str) -> ModelMetadata:
        if model != "iris":
            raise NotFound(f"no model {model!r}")
        return self.meta

    def list_models(self) -> list[str]:
        return ["iris"]

    def infer(self, model: str, version: str, inputs: Arrays, outputs: list[str]) -> dict[str, np.ndarray]:
        self.sent.append((model, version, inputs, outputs))
        rows = inputs["input"][1].shape[0]
        return {"label": np.arange(rows), "proba": np.full((rows, 3), 1 / 3)}

    def close(self) -> None:
        self.closed = True


def test_predictor_shapes_rows_for_any_transport() -> None:
    fake = FakeTransport()
    with Predictor("fake://server", transport=fake, version="1") as p:
        assert p.model == "iris" and p.ready() and p.live()
        assert p.predict([[1, 2, 3, 4], [5, 6, 7, 8]]).tolist() == [0, 1]
        assert list(p.infer([1, 2, 3, 4], outputs=["proba"])) == ["label", "proba"]
        with pytest.raises(InvalidInput, match=r"expects rows of shape \[N, 4\]"):
            p.predict([[1, 2, 3]])
    assert fake.closed and len(fake.sent) == 2  # the refused rows were never sent
    (model, version, inputs, outputs), (_, _, _, only) = fake.sent
    assert (model, version, outputs, only) == ("iris", "1", ["label", "proba"], ["proba"])
    datatype, array = inputs["input"]
    assert datatype == "FP32" and array.dtype == np.float32 and array.shape == (2, 4)


def test_metadata_is_cached_and_errors_pass_through() -> None:
    fake = FakeTransport()
    p = Predictor("fake://server", "nope", transport=fake)
    assert p.ready() is False
    with pytest.raises(NotFound, match="no model 'nope'"):
        p.metadata()
    q = Predictor("fake://server", "iris", transport=fake)
    assert q.metadata() is q.metadata() is fake.meta


@pytest.mark.parametrize(
    ("url", "options", "kind"),
    [
        ("http://127.0.0.1:8080", {}, RestTransport),
        ("https://example.com/prefix", {"binary": True}, RestTransport),
        ("127.0.0.1:8081", {"grpc": True}, GrpcTransport),
        ("grpc://127.0.0.1:8081", {}, GrpcTransport),  # the scheme says gRPC
        ("grpcs://example.com", {}, GrpcTransport),
    ],
)
def test_the_url_and_flags_choose_the_transport(url: str, options: dict, kind: type) -> None:
    transport = Predictor(url, "iris", **options).transport
    assert type(transport) is kind and transport.url == url
    if kind is RestTransport:
        assert transport.binary is options.get("binary", False)
