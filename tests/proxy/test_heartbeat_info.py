"""Heartbeats drop silent daemons; probe, health, info, metrics, OpenAPI, access log, CLI."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
from click.testing import CliRunner

from kachery_resource.cli import cli

from .conftest import MakeProxy, Proxy, client_body
from .v1daemon import V1Daemon


async def test_a_daemon_that_stops_answering_is_dropped_and_its_name_freed(
        make_proxy: MakeProxy, session: aiohttp.ClientSession) -> None:
    proxy = await make_proxy(heartbeat_sec=0.3)
    silent = V1Daemon(proxy.url, "res1", "shared-test-secret")
    proxy.daemons.append(silent)
    assert await silent.connect(autoping=False)  # never reads, never answers pings
    live = await proxy.daemon("live")  # answers pings (aiohttp autoping)
    t0 = time.monotonic()
    while proxy.counters()["connectedResources"] == 2:
        assert time.monotonic() - t0 < 3, "silent daemon was not dropped"
        await asyncio.sleep(0.05)
    assert "res1" not in proxy.state.registry.conns
    await proxy.daemon("res1")  # the name is free again
    await asyncio.sleep(0.8)  # several heartbeat periods: the live daemon stays
    assert (await proxy.post(session, "live", client_body("live")))[0] == 200
    assert live.violations == []


async def test_probe_health_info_metrics_openapi(proxy: Proxy,
                                                 session: aiohttp.ClientSession) -> None:
    await proxy.daemon("res1")
    await proxy.post(session, "res1", client_body("res1"))
    await proxy.post(session, "nobody", client_body("nobody"))
    async with session.get(f"{proxy.url}/probe") as r:
        assert r.status == 200 and await r.text() == "running."
    async with session.get(f"{proxy.url}/healthz") as r:
        health = await r.json()
        assert r.status == 200 and health["status"] == "ok" and health["connectedResources"] == 1
    async with session.get(f"{proxy.url}/api/info") as r:
        info = await r.json()
        assert info["service"] == "kachery-resource-proxy" and info["protocols"] == [1, 2]
        assert info["limits"]["maxWaitSec"] == 25
    async with session.get(f"{proxy.url}/metrics") as r:
        text = await r.text()
        assert "kachery_proxy_connected_resources 1.0" in text
        assert 'kachery_proxy_requests_total{outcome="ok"} 1.0' in text
        assert 'kachery_proxy_requests_total{outcome="resource-not-found"} 1.0' in text
        assert "kachery_proxy_request_duration_seconds_count 2.0" in text
    async with session.get(f"{proxy.url}/openapi.json") as r:
        doc = await r.json()
        assert doc["openapi"].startswith("3.") and "/r/{resource}" in doc["paths"]
        codes = doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
        assert "resource-not-found" in codes and "timeout" in codes
    async with session.get(f"{proxy.url}/") as r:
        assert r.status == 200 and "WebSocket" in (await r.json())["message"]


async def test_v2_daemon_negotiates_and_gets_pong(proxy: Proxy) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect("ws" + proxy.url[4:]) as ws:
        await ws.send_json({"type": "initialize", "resourceName": "v2", "zone": "default",
                            "proxySecret": "shared-test-secret", "protocolVersion": 2})
        ack = await ws.receive_json(timeout=5)
        assert ack == {"type": "acknowledge", "protocolVersion": 2, "heartbeatSec": 30.0}
        await ws.send_json({"type": "ping"})
        assert await ws.receive_json(timeout=5) == {"type": "pong"}


async def test_access_log_has_one_json_line_per_request(
        make_proxy: MakeProxy, tmp_path: Path, session: aiohttp.ClientSession) -> None:
    log = tmp_path / "access.log"
    proxy = await make_proxy(access_log=str(log))
    await proxy.daemon("res1")
    await proxy.post(session, "res1", client_body("res1"))
    await proxy.post(session, "res1", b"junk")
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    requests = [x for x in lines if x["event"] == "request"]
    assert len(requests) == 2
    ok = requests[0]
    assert ok["resource"] == "res1" and ok["sha1"] == "a" * 40 and ok["outcome"] == "ok"
    assert ok["status"] == 200 and ok["durationMs"] >= 0 and ok["remote"] == "127.0.0.1"
    assert requests[1]["outcome"] == "bad-request"
    assert any(x["event"] == "daemon-connected" and x["resource"] == "res1" for x in lines)


def test_proxy_refuses_to_start_without_a_secret(monkeypatch: object) -> None:
    monkeypatch.delenv("PROXY_SECRET", raising=False)  # type: ignore[attr-defined]
    result = CliRunner().invoke(cli, ["proxy", "--port", "0"])
    assert result.exit_code != 0
    assert "PROXY_SECRET" in str(result.exception) or "PROXY_SECRET" in result.output
