"""ServeSettings refuse what no server can run with (for library callers too); the CLI maps names and ports."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_cli

from pipeserve.cli.main import build_parser
from pipeserve.cli.serve import build_settings
from pipeserve.errors import ConfigError
from pipeserve.serving.settings import ANY_PORT, ServeSettings


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 0}, "--workers must be at least 1; got 0."),
        ({"http_port": 70000}, "--http-port must be between 1 and 65535 (or 0: any free port); got 70000."),
        ({"http_port": -1}, "--http-port must be between 1 and 65535"),
        ({"grpc_port": 65536}, "--grpc-port must be between 1 and 65535; got 65536."),
        ({"http_port": 9000, "grpc_port": 9000}, "--grpc-port and --http-port must differ; both are 9000."),
        ({"max_request_bytes": 10}, "--max-request-bytes must be at least 1024; got 10."),
        ({"threads": 0}, "--threads must be at least 1; got 0."),
        ({"grace_period": -1.0}, "--grace-period and --drain-seconds must not be negative; got -1 and 0."),
        ({"drain_seconds": -0.5}, "got 30 and -0.5."),
        ({"backend": "torch"}, "--backend must be one of auto, onnx, sklearn; got 'torch'."),
        ({"log_level": "loud"}, "--log-level must be one of debug, info, warning, error; got 'loud'."),
        ({"inline_rows": -1}, "inline_rows must not be negative; got -1."),
    ],
)
def test_library_callers_cannot_build_a_broken_server(options: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ServeSettings(Path("build/model"), **options)
    assert message in str(info.value)


def test_port_zero_means_any_free_port_for_both() -> None:
    settings = ServeSettings(Path("m"), http_port=ANY_PORT, grpc_port=ANY_PORT)
    assert (settings.http_port, settings.grpc_port) == (0, 0)


@pytest.mark.parametrize(
    ("argv", "ports"),
    [
        ([], (8080, None)),
        (["--http-port", "0"], (0, None)),
        (["--http-port", "auto", "--grpc-port", "auto"], (0, 0)),
        (["--grpc-port", "0"], (8080, None)),  # 0: no gRPC, as KServe means it
        (["--grpc_port=0", "--http_port=9000"], (9000, None)),
        (["--grpc-port", "9001"], (8080, 9001)),
    ],
)
def test_cli_port_spellings(argv: list[str], ports: tuple) -> None:
    settings = build_settings(build_parser().parse_args(["serve", "build/model", *argv]))
    assert (settings.http_port, settings.grpc_port) == ports


def test_a_port_that_is_not_a_number_is_a_usage_error() -> None:
    result = run_cli("serve", "build/model", "--grpc-port", "any")
    assert result.code == 2 and "expected a port number or auto; got 'any'" in result.err
