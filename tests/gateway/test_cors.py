"""CORS in-process: preflights, headers on answers (errors and signed downloads included),
and the corsOrigins setting."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from kachery_resource.errors import ConfigError
from kachery_resource.gateway.app import build_app
from kachery_resource.gateway.settings import load_settings

from .helpers import Client
from .test_api_v2 import add_user, find, store

PAGE = "http://127.0.0.1:9999"


async def preflight(client: Client, path: str, origin: str = PAGE, method: str = "POST") -> Any:
    return await client.options(path, headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type,range"})


@pytest.mark.parametrize("path", ["/api/findFile", "/api/initiateFileUpload",
                                  "/api/finalizeFileUpload", "/api/gateway", "/files/default/x"])
async def test_preflight(local_app: tuple[Client, Path], path: str) -> None:
    client, _ = local_app
    resp = await preflight(client, path)
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    allowed = {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "range"} <= allowed
    assert {"POST", "GET", "PUT"} <= {m.strip() for m in resp.headers["Access-Control-Allow-Methods"].split(",")}


async def test_answers_carry_cors_headers(local_app: tuple[Client, Path]) -> None:
    client, _ = local_app
    key = await add_user(client, "web")
    data = bytes(range(256)) * 40
    assert (await store(client, key, data))[0] == 200
    resp = await client.post("/api/findFile", json=find(hashlib.sha1(data).hexdigest()),
                             headers={"Origin": PAGE})
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    url = (await resp.json())["url"]
    ranged = await client.session.get(url, headers={"Origin": PAGE, "Range": "bytes=5-9"})
    assert ranged.status == 206 and await ranged.read() == data[5:10]
    assert ranged.headers["Access-Control-Allow-Origin"] == "*"
    exposed = {h.strip() for h in ranged.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"Content-Range", "Content-Length", "Accept-Ranges"} <= exposed
    # an error answer is readable by the page too
    refused = await client.post("/api/findFile", json=find("a" * 40), headers={
        "Origin": PAGE, "Authorization": "Bearer wrong"})
    assert refused.status == 401 and refused.headers["Access-Control-Allow-Origin"] == "*"
    # other paths (the human registration pages) are not for pages elsewhere
    health = await client.get("/healthz", headers={"Origin": PAGE})
    assert "Access-Control-Allow-Origin" not in health.headers


async def test_configured_origins(tmp_path: Path, aiohttp_client: Any) -> None:
    config = tmp_path / "zones.yaml"
    config.write_text(f"storage: {tmp_path / 's'}\ncorsOrigins: [{PAGE}, https://figurl.org]\n")
    client = await aiohttp_client(build_app(load_settings(config)))
    ok = await preflight(client, "/api/findFile", origin="https://figurl.org")
    assert ok.status == 204 and ok.headers["Access-Control-Allow-Origin"] == "https://figurl.org"
    other = await preflight(client, "/api/findFile", origin="https://elsewhere.example")
    assert other.status == 403 and "corsOrigins" in (await other.json())["error"]
    resp = await client.post("/api/findFile", json=find("a" * 40), headers={"Origin": PAGE})
    assert resp.headers["Access-Control-Allow-Origin"] == PAGE and "Origin" in resp.headers["Vary"]
    resp = await client.post("/api/findFile", json=find("a" * 40),
                             headers={"Origin": "https://elsewhere.example"})
    assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers
    assert "Origin" in resp.headers["Vary"]  # a shared cache must not serve it to PAGE
    resp = await client.post("/api/findFile", json=find("a" * 40))
    assert "Origin" in resp.headers["Vary"]


def test_bad_origin_setting(tmp_path: Path) -> None:
    config = tmp_path / "zones.yaml"
    config.write_text("corsOrigins: [figurl.org]\n")
    with pytest.raises(ConfigError, match="corsOrigins"):
        load_settings(config, storage=str(tmp_path / "s"))
