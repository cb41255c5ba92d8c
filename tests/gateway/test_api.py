"""The gateway API in-process: happy paths, rights, concurrency, Range, cleanup, info."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path
from typing import Any

from kachery_resource.gateway.app import ZONES_KEY, build_app, sweep_unfinished_uploads
from kachery_resource.gateway.settings import load_settings
from kachery_resource.identity import ClientKeys

from .conftest import stored_files
from .helpers import Client, call, chunked, file_payloads, register, upload

EMPTY = hashlib.sha1(b"").hexdigest()


def content_path(root: Path, data: bytes) -> Path:
    h = hashlib.sha1(data).hexdigest()
    return root / "sha1" / h[:2] / h[2:4] / h[4:6] / h


async def test_info_and_health(local_app: tuple[Client, Path]) -> None:
    client, _ = local_app
    info = await (await client.get("/api/info")).json()
    assert info["service"] == "kachery-resource-gateway"
    assert info["verifiedFinalize"] is True
    assert info["timestampWindowSec"] == 125
    assert {"findFile", "initiateFileUpload", "finalizeFileUpload", "getClientInfo",
            "deleteFile"} <= set(info["requestTypes"])
    assert info["zones"] == [{"name": "default", "backend": "local", "allowPublicDownload": True,
                              "allowPublicUpload": False, "autoApproveClients": False}]
    health = await client.get("/healthz")
    assert health.status == 200 and await health.json() == {"status": "ok"}


async def test_unknown_route_uses_error_shape(local_app: tuple[Client, Path]) -> None:
    client, _ = local_app
    resp = await client.get("/nothing/here")
    assert resp.status == 404
    assert await resp.json() == {"error": "not_found", "message": "Not Found", "status": 404}
    resp = await client.get("/api/gateway")
    assert resp.status == 405 and (await resp.json())["error"] == "method_not_allowed"


async def test_upload_find_download_range(local_app: tuple[Client, Path], client_keys: ClientKeys) -> None:
    client, root = local_app
    await register(client, client_keys)
    data = os.urandom(3_000_001)
    status, body = await upload(client, client_keys, data)
    assert (status, body) == (200, {"type": "finalizeFileUpload"})
    assert content_path(root, data).read_bytes() == data
    assert stored_files(root) == [content_path(root, data).relative_to(root).as_posix()]
    sha1 = hashlib.sha1(data).hexdigest()
    status, found = await call(client, client_keys, {"type": "findFile", "hashAlg": "sha1", "hash": sha1})
    assert status == 200 and found["found"] is True and found["size"] == len(data)
    assert found["objectKey"] == f"sha1/{sha1[:2]}/{sha1[2:4]}/{sha1[4:6]}/{sha1}"
    got = await client.session.get(found["url"])
    assert got.status == 200 and await got.read() == data
    ranged = await client.session.get(found["url"], headers={"Range": "bytes=10-19"})
    assert ranged.status == 206 and await ranged.read() == data[10:20]
    head = await client.session.head(found["url"])
    assert head.status == 200 and head.headers["Content-Length"] == str(len(data))
    # initiate again: already exists, no URL
    status, again = await call(client, client_keys, file_payloads(data)[1])
    assert again == {"type": "initiateFileUpload", "alreadyExists": True}


async def test_empty_file_chunked_put(local_app: tuple[Client, Path], client_keys: ClientKeys) -> None:
    client, root = local_app
    await register(client, client_keys)
    status, answer = await call(client, client_keys, file_payloads(b"")[1])
    assert answer["alreadyExists"] is False
    put = await client.session.put(answer["signedUploadUrl"], data=chunked())
    assert put.status == 200
    assert put.request_info.headers.get("Transfer-Encoding") == "chunked"
    status, body = await call(client, client_keys, {
        "type": "finalizeFileUpload", "objectKey": answer["objectKey"], "hashAlg": "sha1",
        "hash": EMPTY, "size": 0})
    assert status == 200, body
    assert content_path(root, b"").read_bytes() == b""


async def test_concurrent_uploads_of_one_hash(local_app: tuple[Client, Path], client_keys: ClientKeys) -> None:
    client, root = local_app
    await register(client, client_keys)
    data = os.urandom(5_000_000)
    sha1, initiate = file_payloads(data)
    # both initiate before either finishes, then PUT and finalize interleaved
    answers = [(await call(client, client_keys, initiate))[1] for _ in range(2)]
    assert answers[0]["objectKey"] != answers[1]["objectKey"]
    puts = await asyncio.gather(*(client.session.put(a["signedUploadUrl"], data=data) for a in answers))
    assert [p.status for p in puts] == [200, 200]
    results = await asyncio.gather(*(call(client, client_keys, {
        "type": "finalizeFileUpload", "objectKey": a["objectKey"], "hashAlg": "sha1", "hash": sha1,
        "size": len(data)}) for a in answers))
    assert [r[0] for r in results] == [200, 200], results
    # and three full uploads at once
    results = await asyncio.gather(*(upload(client, client_keys, data) for _ in range(3)))
    assert all(r[0] == 200 for r in results), results
    assert content_path(root, data).read_bytes() == data
    assert stored_files(root) == [content_path(root, data).relative_to(root).as_posix()]


async def test_get_client_info(local_app: tuple[Client, Path], client_keys: ClientKeys) -> None:
    client, _ = local_app
    query = {"type": "getClientInfo", "clientId": client_keys.client_id}
    assert (await call(client, client_keys, query))[1] == {"type": "getClientInfo", "found": False}
    await register(client, client_keys)
    status, body = await call(client, client_keys, query)
    assert status == 200 and body["found"] is True
    assert set(body["client"]) == {"clientId", "ownerId", "timestampCreated", "label"}
    assert body["client"]["clientId"] == client_keys.client_id


async def test_delete_file_admin_only(local_app: tuple[Client, Path], client_keys: ClientKeys) -> None:
    client, root = local_app
    await register(client, client_keys)
    await upload(client, client_keys, b"to delete")
    sha1 = hashlib.sha1(b"to delete").hexdigest()
    delete = {"type": "deleteFile", "hashAlg": "sha1", "hash": sha1}
    status, body = await call(client, client_keys, delete)
    assert status == 403 and body["error"] == "admin_only"
    assert content_path(root, b"to delete").exists()
    await register(client, client_keys, admin=True)
    assert await call(client, client_keys, delete) == (200, {"type": "deleteFile", "success": True})
    assert not content_path(root, b"to delete").exists()
    status, body = await call(client, client_keys, delete)
    assert body["success"] is False and "not found" in body["error"]


async def test_private_zone_and_public_upload(tmp_path: Path, aiohttp_client: Any,
                                              client_keys: ClientKeys) -> None:
    config = tmp_path / "zones.yaml"
    config.write_text(f"""
storage: {tmp_path / 'storage'}
timestampWindowSec: 30
zones:
  default: {{}}
  private:
    prefix: priv
    allowPublicDownload: false
    allowPublicUpload: true
""")
    client = await aiohttp_client(build_app(load_settings(config)))
    find = {"type": "findFile", "hashAlg": "sha1", "hash": EMPTY, "zone": "private"}
    status, body = await call(client, client_keys, find)
    assert status == 403 and body["error"] == "client_not_registered"
    await register(client, client_keys, zone="private", upload=False, download=False)
    status, body = await call(client, client_keys, find)
    assert status == 403 and body["error"] == "download_not_allowed"
    await register(client, client_keys, zone="private", upload=False, download=True)
    assert (await call(client, client_keys, find))[1]["found"] is False
    # allowPublicUpload: an approved client without the upload right may upload
    data = b"private bytes"
    sha1, initiate = file_payloads(data)
    status, answer = await call(client, client_keys, {**initiate, "zone": "private"})
    assert status == 200 and answer["objectKey"].startswith(f"priv/staging/{sha1}/")
    put = await client.session.put(answer["signedUploadUrl"], data=data)
    assert put.status == 200
    status, _ = await call(client, client_keys, {
        "type": "finalizeFileUpload", "objectKey": answer["objectKey"], "hashAlg": "sha1",
        "hash": sha1, "size": len(data), "zone": "private"})
    assert status == 200
    assert (tmp_path / "storage" / "priv" / "sha1" / sha1[:2] / sha1[2:4] / sha1[4:6] / sha1).exists()
    # the default zone has its own registry: not registered there
    status, body = await call(client, client_keys, initiate)
    assert status == 403
    # the configured window applies
    status, body = await call(client, client_keys, find, timestamp=int((time.time() - 60) * 1000))
    assert status == 401 and "±30 s" in body["message"]


async def test_removed_client_refused_within_a_second(local_app: tuple[Client, Path],
                                                      client_keys: ClientKeys) -> None:
    client, _ = local_app
    await register(client, client_keys)
    assert (await call(client, client_keys, file_payloads(b"x")[1]))[0] == 200
    registry = client.app[ZONES_KEY]["default"].registry
    # another process removes the record directly in the storage
    await registry.storage.delete(f"clients/{client_keys.client_id}")
    await asyncio.sleep(1.1)
    status, body = await call(client, client_keys, file_payloads(b"x")[1])
    assert status == 403 and body["error"] == "client_not_registered"


async def test_sweep_deletes_old_unfinished_uploads(local_app: tuple[Client, Path],
                                                    client_keys: ClientKeys) -> None:
    client, root = local_app
    await register(client, client_keys)
    _, answer = await call(client, client_keys, file_payloads(b"never finalized")[1])
    assert (await client.session.put(answer["signedUploadUrl"], data=b"never finalized")).status == 200
    _, fresh = await call(client, client_keys, file_payloads(b"fresh")[1])
    assert (await client.session.put(fresh["signedUploadUrl"], data=b"fresh")).status == 200
    staged = [p for p in (root / "staging").rglob("*") if p.is_file()]
    assert len(staged) == 2
    old = time.time() - 2 * 86400
    for p in staged:
        if "never" not in p.read_text():
            continue
        os.utime(p, (old, old))
    zones = client.app[ZONES_KEY]
    settings = load_settings(storage=str(root))
    assert await sweep_unfinished_uploads(settings, zones) == 1
    left = [p for p in (root / "staging").rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in left] == [b"fresh"]
