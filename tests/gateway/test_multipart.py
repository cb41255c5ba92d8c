"""Multipart uploads on both backends (in-process gateway; S3 is a real SeaweedFS)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from kachery_resource.gateway import keys
from kachery_resource.gateway.app import ZONES_KEY, build_app
from kachery_resource.gateway.settings import load_settings
from kachery_resource.identity import ClientKeys

from ..servers import S3Server
from .helpers import Client, call, register

MIB = 1024 * 1024
PART = 5 * MIB


@pytest.fixture(params=["local", "s3"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path, aiohttp_client: Any,
                  monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Client, Callable[[], list[str]]]]:
    """A gateway app and a function listing every object it stores (client records aside)."""
    if request.param == "local":
        root = tmp_path / "storage"
        client = await aiohttp_client(build_app(load_settings(storage=str(root))))

        def listing() -> list[str]:
            return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                          if p.is_file() and not p.name.startswith(".kachery-gateway-secret")
                          and "clients" not in p.parts)
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        for name, value in s3.env().items():
            monkeypatch.setenv(name, value)
        prefix = "mp" + uuid.uuid4().hex[:10]
        settings = load_settings(storage=f"s3://{s3.bucket}/{prefix}",
                                 overrides={"s3EndpointUrl": s3.endpoint})
        client = await aiohttp_client(build_app(settings))

        def listing() -> list[str]:
            c = s3.client()
            objects = c.list_objects_v2(Bucket=s3.bucket, Prefix=prefix + "/").get("Contents", [])
            uploads = c.list_multipart_uploads(Bucket=s3.bucket, Prefix=prefix + "/").get("Uploads", [])
            return sorted([o["Key"][len(prefix) + 1:] for o in objects if "/clients/" not in o["Key"]]
                          + [f"(upload) {u['Key']}" for u in uploads])
    yield client, listing


def content(sha1: str) -> str:
    return keys.content_key("", sha1)


async def start(client: Client, k: ClientKeys, data: bytes, part_size: int = PART) -> dict[str, Any]:
    sha1 = hashlib.sha1(data).hexdigest()
    status, answer = await call(client, k, {"type": "initiateMultipartUpload", "hashAlg": "sha1",
                                            "hash": sha1, "size": len(data), "partSize": part_size})
    assert status == 200, answer
    return {**answer, "hash": sha1, "hashAlg": "sha1"}


async def put_parts(client: Client, k: ClientKeys, up: dict[str, Any], data: bytes,
                    numbers: list[int], body: Callable[[int, bytes], bytes] | None = None) -> None:
    status, answer = await call(client, k, {"type": "getMultipartUploadUrls", "hashAlg": "sha1",
                                            "hash": up["hash"], "objectKey": up["objectKey"],
                                            "partNumbers": numbers})
    assert status == 200, answer
    size = up["partSize"]

    async def one(n: int) -> None:
        chunk = data[(n - 1) * size: n * size]
        resp = await client.session.put(answer["urls"][str(n)], data=body(n, chunk) if body else chunk)
        assert resp.status == 200, await resp.text()
        assert resp.headers.get("ETag")

    await asyncio.gather(*(one(n) for n in numbers))


async def finish(client: Client, k: ClientKeys, up: dict[str, Any], size: int) -> tuple[int, dict[str, Any]]:
    return await call(client, k, {"type": "completeMultipartUpload", "hashAlg": "sha1",
                                  "hash": up["hash"], "objectKey": up["objectKey"], "size": size})


async def find(client: Client, k: ClientKeys, sha1: str) -> dict[str, Any]:
    return (await call(client, k, {"type": "findFile", "hashAlg": "sha1", "hash": sha1}))[1]


async def test_round_trip_with_resume(backend: tuple[Client, Callable[[], list[str]]],
                                      client_keys: ClientKeys) -> None:
    client, listing = backend
    await register(client, client_keys)
    data = os.urandom(2 * PART + 123_457)
    up = await start(client, client_keys, data)
    assert (up["alreadyExists"], up["numParts"]) == (False, 3)
    await put_parts(client, client_keys, up, data, [3, 1])  # out of order, part 2 missing
    status, body = await finish(client, client_keys, up, len(data))
    assert status == 400 and body["error"] == "multipart_incomplete" and "[2]" in body["message"]
    assert (await find(client, client_keys, up["hash"]))["found"] is False
    # resume: ask what is there, send only the rest (part 1 re-sent: allowed)
    status, parts = await call(client, client_keys, {"type": "listMultipartParts", "hashAlg": "sha1",
                                                     "hash": up["hash"], "objectKey": up["objectKey"]})
    assert [(p["partNumber"], p["size"]) for p in parts["parts"]] == [(1, PART), (3, 123_457)]
    await put_parts(client, client_keys, up, data, [2, 1])
    assert await finish(client, client_keys, up, len(data)) == (200, {"type": "completeMultipartUpload"})
    found = await find(client, client_keys, up["hash"])
    assert found["found"] and found["size"] == len(data)
    assert await (await client.session.get(found["url"])).read() == data
    assert listing() == [content(up["hash"])]
    # a retried complete (answer lost) is fine; a new initiate says it exists
    assert (await finish(client, client_keys, up, len(data)))[0] == 200
    assert (await start(client, client_keys, data))["alreadyExists"] is True


async def test_wrong_bytes_leave_nothing(backend: tuple[Client, Callable[[], list[str]]],
                                         client_keys: ClientKeys) -> None:
    client, listing = backend
    await register(client, client_keys)
    data = os.urandom(PART + 1000)
    up = await start(client, client_keys, data)
    await put_parts(client, client_keys, up, data, [1, 2],
                    body=lambda n, chunk: bytes(reversed(chunk)) if n == 2 else chunk)
    status, body = await finish(client, client_keys, up, len(data))
    assert status == 400 and body["error"] == "content_mismatch", body
    assert (await find(client, client_keys, up["hash"]))["found"] is False
    assert listing() == []


async def test_abort_and_orphan_cleanup(backend: tuple[Client, Callable[[], list[str]]],
                                        client_keys: ClientKeys) -> None:
    client, listing = backend
    await register(client, client_keys)
    data = os.urandom(PART + 10)
    up = await start(client, client_keys, data)
    await put_parts(client, client_keys, up, data, [1])
    status, body = await call(client, client_keys, {"type": "abortMultipartUpload", "hashAlg": "sha1",
                                                    "hash": up["hash"], "objectKey": up["objectKey"]})
    assert status == 200, body
    assert listing() == []
    status, body = await finish(client, client_keys, up, len(data))
    assert status == 400 and body["error"] == "upload_missing"
    # an upload abandoned by a crash: kept while young, dropped once idle too long
    orphan = await start(client, client_keys, data)
    await put_parts(client, client_keys, orphan, data, [2])
    zone = client.app[ZONES_KEY]["default"]
    root = keys.multipart_root(zone.prefix)
    assert await zone.storage.mp_cleanup(root, 3600) == 0
    assert listing() != []
    assert await zone.storage.mp_cleanup(root, -1) == 1
    assert listing() == []


async def test_bad_requests(backend: tuple[Client, Callable[[], list[str]]], client_keys: ClientKeys) -> None:
    client, listing = backend
    data = os.urandom(PART + 10)
    sha1 = hashlib.sha1(data).hexdigest()
    initiate = {"type": "initiateMultipartUpload", "hashAlg": "sha1", "hash": sha1, "size": len(data),
                "partSize": PART}
    status, body = await call(client, client_keys, initiate)
    assert status == 403 and body["error"] == "client_not_registered"
    await register(client, client_keys)
    for part_size in [1024, 6 * 1024**3, 1]:
        status, body = await call(client, client_keys, {**initiate, "partSize": part_size})
        assert status == 400 and body["error"] == "invalid_part_size", body
    status, body = await call(client, client_keys, {**initiate, "size": 10**13, "partSize": 10**9})
    assert status == 413 and body["error"] == "file_too_large"
    up = await start(client, client_keys, data)
    status, body = await call(client, client_keys, {"type": "getMultipartUploadUrls", "hashAlg": "sha1",
                                                    "hash": sha1, "objectKey": up["objectKey"],
                                                    "partNumbers": [3]})
    assert status == 400 and "beyond" in body["message"]
    other = hashlib.sha1(b"other").hexdigest()
    status, body = await call(client, client_keys, {"type": "completeMultipartUpload", "hashAlg": "sha1",
                                                    "hash": other, "objectKey": up["objectKey"],
                                                    "size": len(data)})
    assert status == 400 and body["error"] == "object_key_mismatch"
    status, body = await call(client, client_keys, {"type": "listMultipartParts", "hashAlg": "sha1",
                                                    "hash": sha1, "objectKey": "multipart/../../x"})
    assert status == 400 and body["error"] == "invalid_key"
    assert not any(f.startswith("sha1/") for f in listing())


async def test_part_larger_than_declared_is_refused_locally(
        local_app: tuple[Client, Path], client_keys: ClientKeys) -> None:
    client, root = local_app
    await register(client, client_keys)
    data = os.urandom(PART + 10)
    up = await start(client, client_keys, data)
    _, answer = await call(client, client_keys, {"type": "getMultipartUploadUrls", "hashAlg": "sha1",
                                                      "hash": up["hash"], "objectKey": up["objectKey"],
                                                      "partNumbers": [2]})
    resp = await client.session.put(answer["urls"]["2"], data=b"x" * 11)
    assert resp.status == 413
    assert not list((root / "multipart").rglob("00002.*"))
    info = await (await client.get("/api/info")).json()
    assert info["multipartUpload"]["minPartSize"] == PART
    assert "completeMultipartUpload" in info["multipartUpload"]["requestTypes"]


async def wait_consumed(client: Client, up: dict[str, Any], count: int) -> None:
    """Wait until the local upload's in-order hash has consumed ``count`` parts."""
    storage = client.app[ZONES_KEY]["default"].storage
    directory = storage.path(up["objectKey"])
    for _ in range(200):
        assembly = storage.parts._assemblies.get(directory)
        if assembly is not None and assembly.consumed >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the frontier did not reach part {count}")


async def test_local_idle_upload_holds_no_open_file(local_app: tuple[Client, Path],
                                                    client_keys: ClientKeys,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An upload whose parts stop coming closes its data file (abandoned uploads must not
    pile up file descriptors until the sweep), and reopens it when parts come again."""
    from kachery_resource.gateway.storage import assembly

    monkeypatch.setattr(assembly, "IDLE_EXIT_SEC", 0.2)
    client, _root = local_app
    await register(client, client_keys)
    data = os.urandom(3 * PART - 5)
    up = await start(client, client_keys, data)
    data_file = str(client.app[ZONES_KEY]["default"].storage.path(up["objectKey"]) / "data")

    def open_on_data() -> int:
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == data_file)

    await put_parts(client, client_keys, up, data, [1, 2])
    await wait_consumed(client, up, 2)
    for _ in range(100):
        if open_on_data() == 0:
            break
        await asyncio.sleep(0.05)
    assert open_on_data() == 0
    await put_parts(client, client_keys, up, data, [3])
    await wait_consumed(client, up, 3)
    assert await finish(client, client_keys, up, len(data)) == (200, {"type": "completeMultipartUpload"})
    found = await find(client, client_keys, up["hash"])
    assert await (await client.session.get(found["url"])).read() == data


async def test_local_resent_part_after_hashing(local_app: tuple[Client, Path],
                                               client_keys: ClientKeys) -> None:
    """Part 1 first arrives wrong and is hashed in order; sent again right, the hash is
    redone (and the reverse is refused): what becomes visible always hashes to its key."""
    client, root = local_app
    await register(client, client_keys)
    data = os.urandom(3 * PART - 17)
    up = await start(client, client_keys, data)
    await put_parts(client, client_keys, up, data, [1, 2, 3],
                    body=lambda n, chunk: bytes(reversed(chunk)) if n == 1 else chunk)
    await wait_consumed(client, up, 3)
    await put_parts(client, client_keys, up, data, [1])
    assert await finish(client, client_keys, up, len(data)) == (200, {"type": "completeMultipartUpload"})
    found = await find(client, client_keys, up["hash"])
    assert await (await client.session.get(found["url"])).read() == data
    assert [p for p in root.rglob("*") if p.is_file() and "multipart" in p.parts] == []
    # the other way round: right bytes hashed first, then part 2 replaced by wrong bytes
    other = os.urandom(3 * PART - 17)
    up = await start(client, client_keys, other)
    await put_parts(client, client_keys, up, other, [1, 2, 3])
    await wait_consumed(client, up, 3)
    await put_parts(client, client_keys, up, other, [2], body=lambda n, chunk: bytes(len(chunk)))
    status, body = await finish(client, client_keys, up, len(other))
    assert status == 400 and body["error"] == "content_mismatch", body
    assert (await find(client, client_keys, up["hash"]))["found"] is False


async def test_local_complete_without_frontier_state(local_app: tuple[Client, Path],
                                                     client_keys: ClientKeys) -> None:
    """After a gateway restart (no in-memory state) completion hashes the whole file; a
    part PUT after completion is refused and leaves nothing behind."""
    from kachery_resource.gateway.storage.local_parts import LocalParts

    client, root = local_app
    await register(client, client_keys)
    data = os.urandom(2 * PART + 5)
    up = await start(client, client_keys, data)
    await put_parts(client, client_keys, up, data, [2, 3])
    client.app[ZONES_KEY]["default"].storage.parts = LocalParts()  # "restart"
    await put_parts(client, client_keys, up, data, [1])
    _, urls = await call(client, client_keys, {"type": "getMultipartUploadUrls", "hashAlg": "sha1",
                                               "hash": up["hash"], "objectKey": up["objectKey"],
                                               "partNumbers": [1]})
    client.app[ZONES_KEY]["default"].storage.parts = LocalParts()
    assert (await finish(client, client_keys, up, len(data)))[0] == 200
    found = await find(client, client_keys, up["hash"])
    assert await (await client.session.get(found["url"])).read() == data
    resp = await client.session.put(urls["urls"]["1"], data=data[:PART])
    assert resp.status == 404 and (await resp.json())["error"] == "upload_missing"
    assert [p for p in root.rglob("*") if p.is_file() and "multipart" in p.parts] == []
