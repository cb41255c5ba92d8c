"""Fixtures for the gateway tests: in-process apps, real gateway processes, kachery-cloud runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from click.testing import CliRunner, Result

from kachery_resource.gateway.app import build_app
from kachery_resource.gateway.cli import gateway
from kachery_resource.gateway.settings import load_settings
from kachery_resource.identity import ClientKeys

from ..servers import S3Server, ServerProcess, cli_server


def envelope(keys: ClientKeys, payload: dict[str, Any], *, timestamp: int | None = None,
             zone: str | None = "default") -> dict[str, Any]:
    """A signed gateway call like kachery-cloud sends (timestamp now unless given)."""
    stamped = dict(payload)
    if zone is not None:
        stamped.setdefault("zone", zone)
    stamped["timestamp"] = int(time.time() * 1000) if timestamp is None else timestamp
    return {"payload": stamped, "fromClientId": keys.client_id, "signature": keys.sign(stamped)}


def run_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``kachery-resource gateway ARGS`` in-process (click's CliRunner)."""
    return CliRunner().invoke(gateway, list(args), env=env)


def stored_files(root: Path) -> list[str]:
    """Every file in a local storage except client records and the URL secret."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and not p.name.startswith(".kachery-gateway-secret")
                  and not {"clients", "users"} & set(p.relative_to(root).parts))


@dataclass
class GatewayProcess:
    """A running ``kachery-resource gateway`` and how to administer it."""

    server: ServerProcess
    storage_args: list[str]
    env: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    def add_client(self, keys: ClientKeys, *flags: str) -> None:
        """Register ``keys`` with the real ``gateway clients add`` command."""
        done = run_cli("clients", "add", keys.client_id, *self.storage_args, *flags, env=self.env)
        assert done.exit_code == 0, done.output
        assert "approved" in done.output


@pytest.fixture
def local_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway process over a local directory."""
    storage = ["--storage", str(tmp_path / "storage")]
    with cli_server(["gateway", "--port", "0", *storage]) as server:
        yield GatewayProcess(server, storage, {})


@pytest.fixture
def s3_gateway(s3_server: S3Server, tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway process over SeaweedFS, with its own key prefix per test."""
    env = {**s3_server.env(), "AWS_ENDPOINT_URL": s3_server.endpoint}
    storage = ["--storage", f"s3://{s3_server.bucket}/{tmp_path.name}"]
    with cli_server(["gateway", "--port", "0", *storage], env=env) as server:
        yield GatewayProcess(server, storage, env)


def run_kachery_cloud(script: str, gateway_url: str, keys: ClientKeys, kc_dir: Path,
                      cwd: Path, timeout: float = 120) -> dict[str, Any]:
    """Run ``script`` with the released kachery-cloud client in a fresh process.

    The script ends by printing one JSON line, which is returned. A fresh process per
    run matters: kachery-cloud caches keys per process and creates dirs at import.
    """
    env = {**os.environ, "KACHERY_GATEWAY_URL": gateway_url, "KACHERY_CLOUD_DIR": str(kc_dir),
           "KACHERY_CLOUD_CLIENT_ID": keys.client_id, "KACHERY_CLOUD_PRIVATE_KEY": keys.private_key_hex}
    env.pop("KACHERY_RESOURCE_URL", None)
    env.pop("KACHERY_ZONE", None)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)
    assert done.returncode == 0, f"kachery-cloud failed:\n{done.stdout}\n{done.stderr}"
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.fixture
async def local_app(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[tuple[TestClient[Any, Any], Path]]:
    """An in-process gateway over a local directory, and that directory."""
    root = tmp_path / "storage"
    settings = load_settings(storage=str(root))
    client = await aiohttp_client(build_app(settings))
    yield client, root
