"""Security matrix of the kachery 2.x API: ``POST /api/findFile``, ``/api/initiateFileUpload``
and ``/api/finalizeFileUpload``, on a public and a private zone, with every kind of
credential: none, a malformed ``Authorization`` header, a wrong key, another zone's user's
key, a user without the right, and the right user; a removed or reset key stops working
within a second (the registry's cache) even on a gateway that did not make the change.
Afterwards ``/metrics``, ``/openapi.json`` and ``/api/info`` show no key and no secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest

from kachery_resource.gateway import keys
from kachery_resource.gateway.app import ZONES_KEY, build_app
from kachery_resource.gateway.settings import load_settings
from kachery_resource.gateway.users import UserRegistry, key_hash, new_api_key

from ..gateway.test_api_v2 import add_user, finalize, initiate, store
from ..gateway.test_api_v2 import post as v2

pytestmark = pytest.mark.timeout(120)

DATA = b"v2 matrix file\n"
NEW = b"never uploaded\n"
V2_REFUSALS = {"api_key_required", "invalid_authorization", "unknown_api_key",
               "upload_not_allowed", "download_not_allowed"}
# credential kind -> the Authorization header (None: no header); keys filled in per run
KINDS = ["none", "malformed: Basic", "malformed: no key", "malformed: two words",
         "wrong key", "another zone's user", "user without the right", "right user"]
# (endpoint, zone) -> credential kinds that pass; every other kind gets a 401 or 403
PASSES = {
    ("findFile", "pub"): {"none", "user without the right", "right user"},
    ("findFile", "default"): {"right user"},
    ("initiateFileUpload", "pub"): {"right user"},
    ("initiateFileUpload", "default"): {"right user"},
    ("finalizeFileUpload", "pub"): {"right user"},
    ("finalizeFileUpload", "default"): {"right user"},
}


@pytest.fixture
async def gw(tmp_path: Path, aiohttp_client: Any) -> Any:
    """Zone ``pub`` (public download), private zones ``default`` and ``zB``, one directory."""
    settings = load_settings(storage=str(tmp_path / "storage"), overrides={"zones": {
        "default": {"allowPublicDownload": False},
        "pub": {"prefix": "pub", "allowPublicDownload": True},
        "zB": {"prefix": "zb", "allowPublicDownload": False}}})
    return await aiohttp_client(build_app(settings))


def headers(kind: str, right: str, without: str, other_zone: str) -> dict[str, str]:
    value = {"none": None, "malformed: Basic": f"Basic {right}", "malformed: no key": "Bearer ",
             "malformed: two words": f"Bearer {right} x", "wrong key": f"Bearer {new_api_key()}",
             "another zone's user": f"Bearer {other_zone}",
             "user without the right": f"Bearer {without}", "right user": f"Bearer {right}"}[kind]
    return {} if value is None else {"Authorization": value}


def bodies(zone: str) -> dict[str, dict[str, Any]]:
    staging = keys.staging_key("pub" if zone == "pub" else "", hashlib.sha1(NEW).hexdigest(),
                               keys.new_upload_id())
    return {"findFile": {"type": "findFileRequest", "hashAlg": "sha1",
                         "hash": hashlib.sha1(DATA).hexdigest(), "zoneName": zone},
            "initiateFileUpload": initiate(NEW, zone),
            "finalizeFileUpload": finalize(NEW, staging, zone)}


async def test_gateway_v2_matrix(gw: Any) -> None:
    client = gw
    uploader = {z: await add_user(client, f"up-{z}", z) for z in ("pub", "default")}
    download_only = {z: await add_user(client, f"down-{z}", z, upload=False)
                     for z in ("pub", "default")}
    upload_only = {z: await add_user(client, f"nodown-{z}", z, download=False)
                   for z in ("pub", "default")}
    other_zone = await add_user(client, "zb-user", "zB")
    for zone in ("pub", "default"):
        assert (await store(client, uploader[zone], DATA, zone=zone))[0] == 200
    got: dict[tuple[str, str, str], bool] = {}
    want: dict[tuple[str, str, str], bool] = {}
    for (endpoint, zone), passes in PASSES.items():
        without = upload_only[zone] if endpoint == "findFile" else download_only[zone]
        right = uploader[zone] if endpoint != "findFile" else download_only[zone]
        for kind in KINDS:
            r = await client.post(f"/api/{endpoint}", json=bodies(zone)[endpoint],
                                  headers=headers(kind, right, without, other_zone))
            answer = await r.json()
            assert r.status < 500, (endpoint, zone, kind, answer)
            refused = r.status in (401, 403) and answer.get("code") in V2_REFUSALS
            if refused:  # the message says what to do; it never echoes the key
                assert "error" in answer and right not in answer["error"], answer
            got[endpoint, zone, kind], want[endpoint, zone, kind] = refused, kind not in passes
    assert got == want
    # a found file's URL works; an upload through the right user is stored and found
    status, found = await v2(client, "findFile", bodies("default")["findFile"],
                             download_only["default"])
    assert status == 200 and found["found"]
    assert await (await client.session.get(found["url"])).read() == DATA
    await no_secret_on_public_routes(client, [*uploader.values(), *download_only.values(),
                                              *upload_only.values(), other_zone])


async def no_secret_on_public_routes(client: Any, api_keys: list[str]) -> None:
    storage = Path(client.app[ZONES_KEY]["default"].storage.root)
    secrets = [*api_keys, *(key_hash(k) for k in api_keys),
               *(p.read_text().strip() for p in storage.rglob(".kachery-gateway-secret*"))]
    assert len(secrets) > len(api_keys) * 2
    for path in ("/metrics", "/openapi.json", "/api/info", "/healthz"):
        r = await client.get(path)
        text = await r.text()
        assert r.status == 200, path
        assert not [s for s in secrets if s in text], path


async def until_refused(client: Any, key: str, deadline: float) -> float:
    """Seconds until ``key`` gets a 401 on initiateFileUpload (fails after ``deadline``)."""
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        status, answer = await v2(client, "initiateFileUpload", initiate(NEW), key)
        if status == 401:
            assert answer["code"] == "unknown_api_key", answer
            return time.monotonic() - start
        assert status == 200, answer
        await asyncio.sleep(0.05)
    raise AssertionError(f"the key still worked after {deadline} s")


async def test_removed_and_reset_keys_stop_within_a_second(gw: Any) -> None:
    """Changes made elsewhere (another gateway instance, ``users`` CLI) reach this one's
    cache within its 1 s lifetime; the loaded machine gets a margin on top."""
    client = gw
    users = client.app[ZONES_KEY]["default"].users
    elsewhere = UserRegistry(users.storage, users.prefix, users.zone)  # another instance
    key = await add_user(client, "erin")
    assert (await v2(client, "initiateFileUpload", initiate(NEW), key))[0] == 200  # cached
    record = await elsewhere.named("erin")
    assert record is not None
    renewed, new_key = await elsewhere.reset_key(record)
    assert await until_refused(client, key, 5.0) < users.cache_sec + 1.5  # margin: loaded machine
    assert (await v2(client, "initiateFileUpload", initiate(NEW), new_key))[0] == 200  # cached
    await elsewhere.remove(renewed)
    assert await until_refused(client, new_key, 5.0) < users.cache_sec + 1.5
