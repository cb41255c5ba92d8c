"""The kachery 2.x API in-process: shapes, rights, work tokens, verified finalize, one zone
shared with /api/gateway, and the user registry applied within a second."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from kachery_resource.gateway.api_v2 import has_work
from kachery_resource.gateway.app import ZONES_KEY, build_app
from kachery_resource.gateway.settings import load_settings
from kachery_resource.identity import ClientKeys

from .conftest import stored_files
from .helpers import Client, call, register, upload


def work_token(sha1: str) -> str:
    """A proof-of-work token as the kachery 2.x client makes it (13 zero bits)."""
    while True:
        token = os.urandom(8).hex()
        if has_work(token, sha1):
            return token


async def add_user(client: Client, name: str, zone: str = "default", **rights: bool) -> str:
    """Create a user straight in the zone's registry; returns its API key."""
    users = client.app[ZONES_KEY][zone].users  # type: ignore[index]
    rights = {"upload": True, "download": True, "admin": False, **rights}
    return str((await users.add(name, **rights))[1])


async def post(client: Client, path: str, body: Any, key: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    resp = await client.post(f"/api/{path}", json=body, headers=headers)
    return resp.status, await resp.json()


def find(sha1: str, zone: str = "default") -> dict[str, Any]:
    return {"type": "findFileRequest", "hashAlg": "sha1", "hash": sha1, "zoneName": zone}


def initiate(data: bytes, zone: str = "default", token: str | None = None) -> dict[str, Any]:
    sha1 = hashlib.sha1(data).hexdigest()
    return {"type": "initiateFileUploadRequest", "size": len(data), "hashAlg": "sha1",
            "hash": sha1, "zoneName": zone, "workToken": token or work_token(sha1)}


def finalize(data: bytes, object_key: str, zone: str = "default") -> dict[str, Any]:
    return {"type": "finalizeFileUploadRequest", "objectKey": object_key, "hashAlg": "sha1",
            "hash": hashlib.sha1(data).hexdigest(), "zoneName": zone, "size": len(data)}


async def store(client: Client, key: str, data: bytes, body: bytes | None = None,
                zone: str = "default") -> tuple[int, Any]:
    """initiate → PUT ``body`` (default ``data``) → finalize, as kachery 2.x does."""
    status, answer = await post(client, "initiateFileUpload", initiate(data, zone), key)
    assert status == 200, answer
    if answer["alreadyExists"]:
        return status, answer
    put = await client.session.put(answer["signedUploadUrl"], data=data if body is None else body)
    assert put.status == 200
    return await post(client, "finalizeFileUpload", finalize(data, answer["objectKey"], zone), key)


async def test_store_then_find_and_download(local_app: tuple[Client, Path]) -> None:
    client, root = local_app
    key = await add_user(client, "alice")
    data = os.urandom(200_001)
    sha1 = hashlib.sha1(data).hexdigest()
    assert await post(client, "findFile", find(sha1)) == (200, {"type": "findFileResponse", "found": False})
    status, answer = await post(client, "initiateFileUpload", initiate(data), key)
    assert status == 200
    assert set(answer) == {"type", "alreadyExists", "alreadyPending", "signedUploadUrl", "objectKey"}
    assert answer["type"] == "initiateFileUploadResponse"
    assert (answer["alreadyExists"], answer["alreadyPending"]) == (False, False)
    # nothing is visible before finalize verified it
    put = await client.session.put(answer["signedUploadUrl"], data=data)
    assert put.status == 200
    assert (await post(client, "findFile", find(sha1)))[1]["found"] is False
    assert await post(client, "finalizeFileUpload", finalize(data, answer["objectKey"]), key) == (
        200, {"type": "finalizeFileUploadResponse", "success": True})
    status, found = await post(client, "findFile", find(sha1))
    assert status == 200 and found["found"] is True and found["size"] == len(data)
    assert found["objectKey"] == f"sha1/{sha1[:2]}/{sha1[2:4]}/{sha1[4:6]}/{sha1}"
    assert found["bucketUri"] == "gateway://default" and found["type"] == "findFileResponse"
    assert await (await client.session.get(found["url"])).read() == data
    again = await post(client, "initiateFileUpload", initiate(data), key)
    assert again == (200, {"type": "initiateFileUploadResponse", "alreadyPending": False,
                           "alreadyExists": True})
    assert stored_files(root) == [found["objectKey"]]
    info = await (await client.get("/api/info")).json()
    assert info["kachery2Api"] == ["findFile", "initiateFileUpload", "finalizeFileUpload"]
    assert info["corsOrigins"] == ["*"]


async def test_one_zone_for_both_generations(local_app: tuple[Client, Path],
                                             client_keys: ClientKeys) -> None:
    client, _ = local_app
    key = await add_user(client, "bob")
    await register(client, client_keys)
    old, new = b"stored through /api/gateway", b"stored through /api/initiateFileUpload"
    assert (await upload(client, client_keys, old))[0] == 200
    assert (await store(client, key, new))[0] == 200
    v1 = {"type": "findFile", "hashAlg": "sha1", "hash": hashlib.sha1(new).hexdigest()}
    status, by_v1 = await call(client, client_keys, v1)
    status2, by_v2 = await post(client, "findFile", find(hashlib.sha1(old).hexdigest()))
    assert status == status2 == 200 and by_v1["found"] and by_v2["found"]
    assert await (await client.session.get(by_v1["url"])).read() == new
    assert await (await client.session.get(by_v2["url"])).read() == old
    # the same lookup answers both: same fields but the envelope's type
    status, v1_old = await call(client, client_keys, {**v1, "hash": hashlib.sha1(old).hexdigest()})
    strip = {"type", "url"}
    assert {k: v for k, v in v1_old.items() if k not in strip} == \
        {k: v for k, v in by_v2.items() if k not in strip}


async def test_tampered_upload_is_never_visible(local_app: tuple[Client, Path]) -> None:
    client, root = local_app
    key = await add_user(client, "mallory")
    data, evil = b"the declared bytes", b"the tampered bytes"
    status, body = await store(client, key, data, body=evil)
    assert status == 400 and body["code"] == "content_mismatch"
    assert "do not match the declared file" in body["error"]
    for content in (data, evil):
        assert (await post(client, "findFile", find(hashlib.sha1(content).hexdigest())))[1]["found"] is False
    assert stored_files(root) == []


async def test_keys_and_rights(tmp_path: Path, aiohttp_client: Any) -> None:
    config = tmp_path / "zones.yaml"
    config.write_text(f"storage: {tmp_path / 's'}\nzones:\n  default: {{}}\n"
                      "  private:\n    prefix: priv\n    allowPublicDownload: false\n")
    client = await aiohttp_client(build_app(load_settings(config)))
    uploader = await add_user(client, "up", zone="private")
    reader = await add_user(client, "reader", zone="private", upload=False)
    nobody = await add_user(client, "nobody", zone="private", upload=False, download=False)
    public_uploader = await add_user(client, "pub")
    data = b"private data"
    sha1 = hashlib.sha1(data).hexdigest()
    # upload: no key 401, wrong key 401, a key of another zone 401, no right 403
    for key, status in [(None, 401), ("not-a-key", 401), (public_uploader, 401), (reader, 403)]:
        got, body = await post(client, "initiateFileUpload", initiate(data, "private"), key)
        assert got == status, body
        assert set(body) == {"error", "code"}
    got, body = await post(client, "initiateFileUpload", initiate(data, "private"))
    assert "KACHERY_API_KEY" in body["error"] and "users add NAME --zone private --upload" in body["error"]
    assert (await store(client, uploader, data, zone="private"))[0] == 200
    # download from the private zone: no key 401, no right 403, reader 200
    assert (await post(client, "findFile", find(sha1, "private")))[0] == 401
    assert (await post(client, "findFile", find(sha1, "private"), nobody))[0] == 403
    status, found = await post(client, "findFile", find(sha1, "private"), reader)
    assert status == 200 and found["found"] is True and found["objectKey"].startswith("priv/")
    # the public zone: anonymous is fine, a wrong key is a 401 (never silently anonymous)
    assert (await post(client, "findFile", find(sha1)))[1] == {"type": "findFileResponse", "found": False}
    status, body = await post(client, "findFile", find(sha1), "wrong-key")
    assert status == 401 and body["code"] == "unknown_api_key"
    resp = await client.post("/api/findFile", json=find(sha1), headers={"Authorization": "Basic eA=="})
    assert resp.status == 401 and (await resp.json())["code"] == "invalid_authorization"


@pytest.mark.parametrize(("body", "status", "code"), [
    (b"{not json", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_request"),
    (b'{"type": "findFileRequest", "hashAlg": "sha1", "hash": "ab", "zoneName": "default"}', 400,
     "invalid_hash"),
    (b'{"type": "findFileRequest", "hashAlg": "md5", "hash": "ab", "zoneName": "default"}', 400,
     "unsupported_hash_alg"),
    (b'{"type": "findFileRequest", "hashAlg": "sha1", "zoneName": "default"}', 400, "invalid_request"),
    (b'{"type": "initiateFileUploadRequest", "hashAlg": "sha1", "hash": "' + b"a" * 40
     + b'", "zoneName": "default", "size": 3}', 400, "invalid_request"),
    (b'{"type": "findFileRequest", "hashAlg": "sha1", "hash": "' + b"a" * 40
     + b'", "zoneName": "nowhere"}', 404, "unknown_zone"),
    (b'{"type": "findFileRequest", "hashAlg": "sha1", "hash": "' + b"a" * 40
     + b'", "zoneName": "../x"}', 404, "unknown_zone"),
    (b"x" * 70000, 413, "body_too_large"),
])
async def test_bad_requests(local_app: tuple[Client, Path], body: bytes, status: int, code: str) -> None:
    client, _ = local_app
    path = "initiateFileUpload" if b"initiate" in body else "findFile"
    resp = await client.post(f"/api/{path}", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == status
    answer = await resp.json()
    assert answer["code"] == code and isinstance(answer["error"], str) and answer["error"]


async def test_bad_work_token(local_app: tuple[Client, Path]) -> None:
    client, root = local_app
    key = await add_user(client, "carol")
    data = b"needs work"
    sha1 = hashlib.sha1(data).hexdigest()
    bad = next(t for t in (f"{i:016x}" for i in range(100)) if not has_work(t, sha1))
    status, body = await post(client, "initiateFileUpload", initiate(data, token=bad), key)
    assert status == 400 and body["code"] == "invalid_work_token" and "13 zero bits" in body["error"]
    # a token is bound to its hash
    other = work_token(hashlib.sha1(b"other").hexdigest())
    if not has_work(other, sha1):
        assert (await post(client, "initiateFileUpload", initiate(data, token=other), key))[0] == 400
    assert stored_files(root) == []


async def test_user_changes_apply_within_a_second(local_app: tuple[Client, Path]) -> None:
    client, _ = local_app
    users = client.app[ZONES_KEY]["default"].users
    key = await add_user(client, "dave")
    assert (await post(client, "initiateFileUpload", initiate(b"d"), key))[0] == 200
    record = await users.named("dave")
    assert record is not None
    new_record, new_key = await users.reset_key(record)
    await asyncio.sleep(1.1)
    assert (await post(client, "initiateFileUpload", initiate(b"d"), key))[0] == 401
    assert (await post(client, "initiateFileUpload", initiate(b"d"), new_key))[0] == 200
    await users.storage.delete(f"users/{new_record.keySha256}")  # as `users remove` elsewhere does
    await asyncio.sleep(1.1)
    assert (await post(client, "initiateFileUpload", initiate(b"d"), new_key))[0] == 401
