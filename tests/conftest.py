"""Fixtures shared by every test tier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kachery_resource.identity import ClientKeys

from .servers import S3Server, nats_server, seaweedfs


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS per test session (it takes a few seconds to start)."""
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with nats_server(tmp_path_factory.mktemp("nats")) as url:
        yield url


@pytest.fixture
def client_keys() -> ClientKeys:
    """Fresh kachery-cloud client keys for one test."""
    return ClientKeys.generate()


@pytest.fixture
def kc_dir(tmp_path: Path) -> Path:
    """An empty $KACHERY_CLOUD_DIR for one test."""
    d = tmp_path / "kachery-cloud"
    d.mkdir()
    return d
