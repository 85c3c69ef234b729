"""Fixtures for the server tests: the real `pipeserve serve` CLI on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serving_support import start_server

from pipeserve.localserver import LocalServer


@pytest.fixture(scope="module")
def iris_server(iris_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server = start_server(iris_repo, tmp_path_factory.mktemp("iris-server"))
    yield server
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def diabetes_server(diabetes_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server = start_server(diabetes_repo, tmp_path_factory.mktemp("diabetes-server"))
    yield server
    assert server.stop() == 0, server.log()
