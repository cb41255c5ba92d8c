"""announceResource in-process: who may announce, what is stored, what the CLI lists."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from kachery_resource.gateway.announcements import all_announcements
from kachery_resource.gateway.app import ZONES_KEY, build_app
from kachery_resource.gateway.settings import load_settings
from kachery_resource.identity import ClientKeys

from .conftest import run_cli
from .helpers import Client, call, register

URL = "http://127.0.0.1:3030/r/lab1"


def announce(url: str = URL) -> dict[str, str]:
    return {"type": "announceResource", "resourceUrl": url}


async def test_only_uploaders_may_announce(local_app: tuple[Client, Path]) -> None:
    client, _ = local_app
    keys = ClientKeys.generate()
    status, body = await call(client, keys, announce())
    assert status == 403 and body["error"] == "client_not_registered"
    await register(client, keys, upload=False)
    status, body = await call(client, keys, announce())
    assert status == 403 and body["error"] == "upload_not_allowed"
    assert "--upload" in body["message"]
    zone = client.app[ZONES_KEY]["default"]  # type: ignore[index]
    assert await all_announcements(zone) == []


async def test_announce_is_stored_and_renewed(local_app: tuple[Client, Path]) -> None:
    client, _ = local_app
    info = await (await client.get("/api/info")).json()
    assert "announceResource" in info["requestTypes"]
    keys = ClientKeys.generate()
    await register(client, keys)
    status, body = await call(client, keys, announce())
    assert status == 200, body
    assert body == {"type": "announceResource", "resourceUrl": URL, "ttlSec": 90.0,
                    "renewSec": 30.0, "onDemand": True}
    zone = client.app[ZONES_KEY]["default"]  # type: ignore[index]
    [first] = await all_announcements(zone)
    await call(client, keys, announce())
    [again] = await all_announcements(zone)
    assert again.resourceUrl == URL and again.clientId == keys.client_id and again.is_live()
    assert again.firstSeen == first.firstSeen and again.lastSeen >= first.lastSeen


async def test_bad_resource_urls_are_refused(local_app: tuple[Client, Path]) -> None:
    client, _ = local_app
    keys = ClientKeys.generate()
    await register(client, keys)
    for bad in ("ftp://x/r/a", "http://127.0.0.1:3030/files/a", "http://h/r/a?x=1", "http://h/r/" + "a" * 1000):
        status, body = await call(client, keys, announce(bad))
        assert status == 400 and body["error"] == "invalid_request", (bad, body)
        assert "resourceUrl" in body["message"]


async def test_resources_list(tmp_path: Path, aiohttp_client: object) -> None:
    config = tmp_path / "zones.yaml"
    config.write_text(f"storage: {tmp_path / 'storage'}\nzones:\n  default:\n"
                      "    resources: [http://old-daemon.example.org/r/legacy]\n")
    client = await aiohttp_client(build_app(load_settings(config)))  # type: ignore[operator]
    keys = ClientKeys.generate()
    await register(client, keys)
    assert (await call(client, keys, announce()))[0] == 200
    done = await asyncio.to_thread(run_cli, "resources", "list", "--config", str(config), "--json")
    assert done.exit_code == 0, done.output
    rows = json.loads(done.output[done.output.index("["):])
    assert [(r["resourceUrl"], r["source"], r["status"]) for r in rows] == [
        (URL, "announced", "live"), ("http://old-daemon.example.org/r/legacy", "config", "listed")]
    assert rows[0]["lastSeen"].endswith("Z")
    text = (await asyncio.to_thread(run_cli, "resources", "list", "--config", str(config))).output
    assert f"{URL}  live" in text and "last seen" in text and "from the zones file" in text


async def test_only_the_announcer_withdraws(local_app: tuple[Client, Path]) -> None:
    client, _ = local_app
    owner, other = ClientKeys.generate(), ClientKeys.generate()
    for keys in (owner, other):
        await register(client, keys)
    assert (await call(client, owner, announce()))[0] == 200
    withdraw = {"type": "withdrawResource", "resourceUrl": URL}
    assert await call(client, other, withdraw) == (200, {"type": "withdrawResource", "withdrawn": False})
    zone = client.app[ZONES_KEY]["default"]  # type: ignore[index]
    assert len(await all_announcements(zone)) == 1
    assert await call(client, owner, withdraw) == (200, {"type": "withdrawResource", "withdrawn": True})
    assert await all_announcements(zone) == []
