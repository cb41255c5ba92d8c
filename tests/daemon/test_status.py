"""`kachery-resource status` reads what the running `share` publishes; `doctor` checks."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kachery_resource.cli import cli
from kachery_resource.daemon.state import ShareState, live_state, read_state
from kachery_resource.identity import ensure_client_keys

from ..servers import start_cli, wait_until
from .live import live_proxy


def status(cfg: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["status", "--config", str(cfg), *args])
    return result.exit_code, result.output


def test_status_follows_a_running_share(tmp_path: Path, kc_dir: Path) -> None:
    ensure_client_keys(kc_dir)
    cfg = tmp_path / "kachery-resource.yaml"
    env = {"KACHERY_CLOUD_DIR": str(kc_dir), "KACHERY_GATEWAY_URL": "http://127.0.0.1:9",
           "KACHERY_ZONE": "default"}
    code, text = status(cfg)
    assert code == 1 and "share: not running in this directory" in text
    with live_proxy("pw") as proxy:
        cfg.write_text(f"resourceName: r1\nproxyUrl: {proxy.url}\nproxySecret: pw\n")
        daemon = start_cli(["share"], env=env, cwd=tmp_path, ready=r"KACHERY_RESOURCE_URL=(\S+)")
        try:
            wait_until(lambda: read_state(tmp_path / ".kachery-resource").get("connected"), 15)
            code, text = status(cfg, "--json")
            data = json.loads(text)
            assert code == 0, text
            assert data["running"] and data["connected"] and data["pid"] == daemon.proc.pid
            assert data["proxyUrl"] == proxy.url and data["resourceName"] == "r1"
            assert data["filesServed"] == 0 and data["uploadsInFlight"] == 0
            assert time.time() - 60 < data["connectedSince"] <= time.time()
            code, text = status(cfg)
            assert code == 0 and f"proxy: connected to {proxy.url} as 'r1' since" in text
        except BaseException:
            print(daemon.text())
            raise
    try:  # the proxy is gone: running, not connected
        wait_until(lambda: not read_state(tmp_path / ".kachery-resource").get("connected"), 15)
        code, text = status(cfg)
        assert code == 1 and "proxy: NOT connected to" in text
    finally:
        daemon.stop()
    code, text = status(cfg, "--json")
    assert code == 1 and json.loads(text) == {"running": False, "connected": False}
    assert not (tmp_path / ".kachery-resource" / "share-state.json").exists()


def test_a_state_file_left_by_a_dead_share_is_not_running(tmp_path: Path) -> None:
    state = ShareState(tmp_path, proxyUrl="http://p")
    state.connection(True, "")
    state.served(5 * 2**20)
    state.failed("sha1://ab", "file changed")
    state.publish()  # share does this every second
    data = read_state(tmp_path)
    assert data["connected"] and data["filesServed"] == 1 and data["bytesUploaded"] == 5 * 2**20
    assert data["recentFailures"][0]["error"] == "file changed"
    assert live_state(tmp_path)["pid"] == os.getpid()
    data["pid"] = 2**22 + 12345  # beyond pid_max: no such process
    (tmp_path / "share-state.json").write_text(json.dumps(data))
    assert live_state(tmp_path) == {}


@pytest.fixture
def doctor_env(kc_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("KACHERY_CLOUD_CLIENT_ID", "KACHERY_CLOUD_PRIVATE_KEY", "KACHERY_ZONE",
                 "KACHERY_GATEWAY_URL", "KACHERY_DIR"):
        monkeypatch.delenv(name, raising=False)
    return {"KACHERY_CLOUD_DIR": str(kc_dir)}


def test_doctor_reports_each_check_and_fails_on_a_changed_link(
        tmp_path: Path, kc_dir: Path, doctor_env: dict[str, str]) -> None:
    from kachery_resource.store import LocalStore

    from .live import live_gateway, register

    keys, _ = ensure_client_keys(kc_dir)
    cfg = tmp_path / "kachery-resource.yaml"
    data = tmp_path / "data.bin"
    data.write_bytes(b"first")
    LocalStore(kc_dir).link(data)
    with live_proxy("pw") as proxy, live_gateway(tmp_path / "zone") as gateway:
        register(gateway, keys)
        cfg.write_text(f"resourceName: r1\nproxyUrl: {proxy.url}\nproxySecret: pw\n"
                       f"gatewayUrl: {gateway.url}\n")
        good = CliRunner().invoke(cli, ["doctor", "--config", str(cfg)], env=doctor_env)
        assert good.exit_code == 0, good.output
        for name in ("store", "client keys", "proxy", "proxy secret", "gateway", "zone",
                     "registration", "upload rights", "clock vs proxy", "clock vs gateway"):
            assert f"ok   {name}:" in good.output, good.output
        assert "ok   linked files: 1 unchanged since linked" in good.output
        data.write_bytes(b"second, longer")
        bad = CliRunner().invoke(cli, ["doctor", "--config", str(cfg)], env=doctor_env)
    assert bad.exit_code == 1
    assert f"FAIL linked files: 1 of 1 changed since linked: {data} changed — fix: run " \
           "`kachery-resource link` on them again" in bad.output


async def test_doctor_finds_a_clock_that_is_off(aiohttp_client: Any) -> None:
    import email.utils

    import aiohttp
    from aiohttp import web

    from kachery_resource.daemon.checks import check_clock

    async def late(request: web.Request) -> web.Response:
        return web.Response(headers={"Date": email.utils.formatdate(time.time() - 600, usegmt=True)})

    app = web.Application()
    app.router.add_get("/api/info", late)
    client = await aiohttp_client(app)
    async with aiohttp.ClientSession() as session:
        check = await check_clock("proxy", str(client.make_url("/api/info")), session)
    assert not check.ok and "this machine's clock is +60" in check.detail  # +600 or +601
    assert "s off the proxy's" in check.detail
    assert "NTP" in check.fix
