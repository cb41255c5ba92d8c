"""Per-resource tokens: hashed storage, claims, takeover of a stale socket, fixed zones."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from click.testing import CliRunner

from kachery_resource.cli import cli
from kachery_resource.proxy.credentials import TokenStore

from .conftest import SECRET, MakeProxy, client_body


def _add_token(path: Path, name: str, zone: str = "default") -> str:
    result = CliRunner().invoke(cli, ["proxy", "tokens", "add", name, "--zone", zone,
                                      "--tokens-file", str(path)])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_tokens_cli_stores_only_hashes(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token = _add_token(path, "lab1", "zoneA")
    assert token.startswith("krp_") and len(token) > 40
    text = path.read_text()
    assert token not in text and token[4:] not in text
    assert json.loads(text)["tokens"]["lab1"]["zone"] == "zoneA"
    assert oct(path.stat().st_mode)[-3:] == "600"
    runner = CliRunner()
    listed = runner.invoke(cli, ["proxy", "tokens", "list", "--tokens-file", str(path)])
    assert "lab1\tzone=zoneA" in listed.stdout and token not in listed.stdout
    again = runner.invoke(cli, ["proxy", "tokens", "add", "lab1", "--tokens-file", str(path)])
    assert again.exit_code != 0 and "--replace" in str(again.exception)
    removed = runner.invoke(cli, ["proxy", "tokens", "remove", "lab1", "--tokens-file", str(path)])
    assert removed.exit_code == 0 and TokenStore(path).entries() == {}


async def test_name_with_a_token_needs_that_token(make_proxy: MakeProxy, tmp_path: Path,
                                                  session: aiohttp.ClientSession) -> None:
    path = tmp_path / "tokens.json"
    proxy = await make_proxy(tokens_file=path)
    token = _add_token(path, "lab1")  # added while the proxy runs
    refused = await proxy.refused("lab1", SECRET)  # the shared secret is not enough
    assert refused.close_code == 4001
    assert (await proxy.refused("lab1", token + "x")).close_code == 4001
    d = await proxy.daemon("lab1", token)
    assert (await proxy.post(session, "lab1", client_body("lab1")))[0] == 200
    assert d.violations == []
    await proxy.daemon("other")  # names without a token still take the shared secret


async def test_takeover_needs_the_credential_and_closes_the_stale_socket(
        make_proxy: MakeProxy, tmp_path: Path, session: aiohttp.ClientSession) -> None:
    path = tmp_path / "tokens.json"
    token = _add_token(path, "lab1")
    proxy = await make_proxy(tokens_file=path)
    stale = await proxy.daemon("lab1", token, silent=True)  # e.g. a half-open socket
    waiting = asyncio.create_task(proxy.post(session, "lab1", client_body("lab1")))
    while not stale.received:
        await asyncio.sleep(0.01)
    fresh = await proxy.daemon("lab1", token)
    status, body, _ = await waiting  # the old socket's waiter is told at once
    assert status == 502 and body["code"] == "resource-disconnected"
    await stale.wait_closed()
    assert stale.close_code == 4009
    assert (await proxy.post(session, "lab1", client_body("lab1")))[0] == 200
    assert fresh.answered == 1
    # shared-secret names: first come, first served; no takeover without a token
    await proxy.daemon("open")
    assert (await proxy.refused("open")).close_code == 4002


async def test_zone_is_fixed_by_the_credential_or_config(
        make_proxy: MakeProxy, tmp_path: Path, session: aiohttp.ClientSession) -> None:
    path = tmp_path / "tokens.json"
    token = _add_token(path, "lab1", "zoneA")
    proxy = await make_proxy(tokens_file=path, resource_zones={"fixed": "zoneB"})
    assert (await proxy.refused("lab1", token, zone="default")).close_code == 4003
    assert (await proxy.refused("fixed", zone="default")).close_code == 4003
    await proxy.daemon("lab1", token, zone="zoneA")
    await proxy.daemon("fixed", zone="zoneB")
    status, body, _ = await proxy.post(session, "lab1", client_body("lab1", zone="default"))
    assert status == 500 and body["code"] == "zone-mismatch"
    assert (await proxy.post(session, "lab1", client_body("lab1", zone="zoneA")))[0] == 200


async def test_require_tokens_refuses_the_shared_secret(make_proxy: MakeProxy,
                                                        tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token = _add_token(path, "lab1")
    proxy = await make_proxy(tokens_file=path, require_tokens=True)
    assert (await proxy.refused("other")).close_code == 4001
    await proxy.daemon("lab1", token)
