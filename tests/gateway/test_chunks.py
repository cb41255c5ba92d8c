"""Chunk uploads (docs/design-chunks.md): the signed list and its checks, chunks checked
against it, findChunks, the check against the whole file, the sweep. In-process gateway
over a local directory; the main path also over SeaweedFS."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from kachery_resource.chunking import ChunkList, chunk_size_for
from kachery_resource.gateway import keys
from kachery_resource.gateway.app import (
    SETTINGS_KEY,
    ZONES_KEY,
    build_app,
    sweep_unfinished_uploads,
)
from kachery_resource.gateway.chunks import CHUNKS_KEY
from kachery_resource.gateway.settings import load_settings
from kachery_resource.identity import ClientKeys, signed_envelope

from ..servers import S3Server
from .helpers import Client, call, register, upload
from .test_multipart import finish, put_parts, start

MIB = 1024 * 1024
CS = 256 * 1024
DATA = os.urandom(6 * MIB + 100)  # past one chunk: 24 chunks of 256 KiB and 100 bytes; 2 parts


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def chunk_list_of(data: bytes) -> ChunkList:
    cs = chunk_size_for(len(data))
    return ChunkList(sha1(data), len(data), cs,
                     "".join(sha1(data[i:i + cs]) for i in range(0, len(data), cs)))


def signed_doc(k: ClientKeys, payload: dict[str, Any]) -> bytes:
    return json.dumps(signed_envelope(k, payload)).encode()


def piece(data: bytes, i: int) -> bytes:
    return data[i * CS:(i + 1) * CS]


async def register_list(client: Client, k: ClientKeys, doc: bytes, file_sha1: str, size: int,
                        chunk_size: int = CS) -> tuple[int, dict[str, Any]]:
    base = {"hashAlg": "sha1", "hash": file_sha1, "size": size, "chunkSize": chunk_size,
            "listSha1": sha1(doc), "listSize": len(doc)}
    status, answer = await call(client, k, {"type": "initiateChunkList", **base})
    if status != 200 or answer["alreadyExists"]:
        return status, answer
    put = await client.session.put(answer["signedUploadUrl"], data=doc)
    assert put.status == 200, await put.text()
    return await call(client, k, {"type": "finalizeChunkList", **base, "objectKey": answer["objectKey"]})


async def send_chunk(client: Client, k: ClientKeys, file_sha1: str, index: int, body: bytes,
                     headers_ok: bool = False) -> tuple[int, dict[str, Any]]:
    base = {"hashAlg": "sha1", "hash": file_sha1, "chunkSize": CS}
    status, answer = await call(client, k, {"type": "initiateChunkUpload", **base, "indices": [index],
                                            "acceptsUploadHeaders": headers_ok})
    if status != 200:
        return status, answer
    target = answer["chunks"][str(index)]
    if target["alreadyExists"]:
        return 200, {"alreadyExists": True}
    put = await client.session.put(target["signedUploadUrl"], data=body,
                                   headers=target.get("signedUploadHeaders", {}))
    if put.status != 200:
        return put.status, {"error": "put refused"}
    return await call(client, k, {"type": "finalizeChunkUpload", **base, "index": index,
                                  "objectKey": target["objectKey"]})


async def find(client: Client, k: ClientKeys, file_sha1: str, indices: list[int]) -> dict[str, Any]:
    status, answer = await call(client, k, {"type": "findChunks", "hashAlg": "sha1", "hash": file_sha1,
                                            "indices": indices})
    assert status == 200, answer
    return answer


async def get(client: Client, url: str) -> bytes:
    resp = await client.session.get(url)
    assert resp.status == 200, await resp.text()
    return await resp.read()


@pytest.fixture(params=["local", "s3"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path, aiohttp_client: Any,
                  monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Client, Callable[[], list[str]]]]:
    """A gateway app and a function listing the chunk objects it stores."""
    if request.param == "local":
        root = tmp_path / "storage"
        client = await aiohttp_client(build_app(load_settings(storage=str(root))))

        def listing() -> list[str]:
            top = root / "chunks"
            return sorted(p.relative_to(top).as_posix() for p in top.rglob("*") if p.is_file())
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        for name, value in s3.env().items():
            monkeypatch.setenv(name, value)
        prefix = "ch" + uuid.uuid4().hex[:10]
        settings = load_settings(storage=f"s3://{s3.bucket}/{prefix}",
                                 overrides={"s3EndpointUrl": s3.endpoint})
        client = await aiohttp_client(build_app(settings))

        def listing() -> list[str]:
            head = f"{prefix}/chunks/"
            found = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=head).get("Contents", [])
            return sorted(o["Key"][len(head):] for o in found)
    yield client, listing


async def test_chunks_from_list_to_whole_file(backend: tuple[Client, Callable[[], list[str]]]) -> None:
    client, listing = backend
    k = ClientKeys.generate()
    await register(client, k)
    chunks = chunk_list_of(DATA)
    assert await find(client, k, chunks.sha1, [0]) == {"type": "findChunks", "found": False}
    status, answer = await send_chunk(client, k, chunks.sha1, 0, piece(DATA, 0))
    assert (status, answer["error"]) == (400, "chunk_list_missing")
    doc = chunks.signed(k, "default")
    assert await register_list(client, k, doc, chunks.sha1, len(DATA)) == (200, {"type": "finalizeChunkList"})
    assert (await register_list(client, k, doc, chunks.sha1, len(DATA)))[1]["alreadyExists"] is True
    for i in (0, 2):  # staged on both backends, store-verified on S3 when SeaweedFS checks sha1
        assert (await send_chunk(client, k, chunks.sha1, i, piece(DATA, i), headers_ok=i == 2))[0] == 200
    assert await send_chunk(client, k, chunks.sha1, 0, piece(DATA, 0)) == (200, {"alreadyExists": True})
    found = await find(client, k, chunks.sha1, [0, 1, 2])
    assert (found["found"], found["wholeFile"], found["size"], found["chunkSize"]) == (True, False, len(DATA), CS)
    assert sorted(found["chunks"]) == ["0", "2"]
    assert await get(client, found["listUrl"]) == doc and found["listSha1"] == sha1(doc)
    assert await get(client, found["chunks"]["2"]) == piece(DATA, 2)
    # includePending: a URL for chunk 1 too, which answers 404 until chunk 1 is uploaded
    status, ahead = await call(client, k, {"type": "findChunks", "hashAlg": "sha1", "hash": chunks.sha1,
                                           "indices": [0, 1, 2], "includePending": True})
    assert status == 200 and sorted(ahead["chunks"]) == ["0", "1", "2"] and ahead["present"] == [0, 2]
    resp = await client.session.get(ahead["chunks"]["1"])
    assert resp.status == 404
    assert (await send_chunk(client, k, chunks.sha1, 1, piece(DATA, 1)))[0] == 200
    assert await get(client, ahead["chunks"]["1"]) == piece(DATA, 1)
    status, answer = await call(client, k, {"type": "findChunks", "hashAlg": "sha1", "hash": chunks.sha1,
                                            "indices": [25]})  # past the last chunk
    assert (status, answer["error"]) == (400, "invalid_request")

    assert (await upload(client, k, DATA))[0] == 200  # the whole file: readers move to it
    await client.app[CHUNKS_KEY].idle()
    found = await find(client, k, chunks.sha1, [0])
    assert (found["wholeFile"], found["size"]) == (True, len(DATA))
    assert await get(client, found["url"]) == DATA
    checked = f"{chunks.sha1}/{CS}/checked"
    assert listing() == [f"{chunks.sha1}/{CS}/000000", f"{chunks.sha1}/{CS}/000001",
                         f"{chunks.sha1}/{CS}/000002", checked,
                         f"{chunks.sha1}/{CS}/list.json"]


async def test_a_tampered_chunk_is_never_readable(backend: tuple[Client, Callable[[], list[str]]]) -> None:
    client, listing = backend
    k = ClientKeys.generate()
    await register(client, k)
    chunks = chunk_list_of(DATA)
    assert (await register_list(client, k, chunks.signed(k, "default"), chunks.sha1, len(DATA)))[0] == 200
    tampered = b"X" + piece(DATA, 1)[1:]
    for headers_ok in (False, True):
        status, answer = await send_chunk(client, k, chunks.sha1, 1, tampered, headers_ok)
        assert status == 400 and answer["error"] in ("content_mismatch", "put refused"), answer
        found = await find(client, k, chunks.sha1, [1])
        assert found["chunks"] == {}
    status, answer = await send_chunk(client, k, chunks.sha1, 2, piece(DATA, 2) + b"more")
    assert status in (400, 413), answer  # longer than the chunk: refused at PUT or finalize
    assert listing() == [f"{chunks.sha1}/{CS}/list.json"]


@pytest.mark.parametrize("how", ["bad signature", "another signer", "wrong chunkSize", "short chunkSha1",
                                 "other file", "other zone"])
async def test_an_invalid_list_is_refused(local_app: tuple[Client, Path], how: str) -> None:
    client, root = local_app
    k, other = ClientKeys.generate(), ClientKeys.generate()
    await register(client, k)
    await register(client, other)
    chunks = chunk_list_of(DATA)
    payload = chunks.payload("default")
    signer = other if how == "another signer" else k
    if how == "wrong chunkSize":
        payload["chunkSize"] = 2 * CS
    elif how == "short chunkSha1":
        payload["chunkSha1"] = payload["chunkSha1"][:-40]
    elif how == "other file":
        payload["hash"] = sha1(b"another file")
    elif how == "other zone":
        payload["zone"] = "elsewhere"
    envelope = signed_envelope(signer, payload)
    if how == "bad signature":
        envelope["payload"]["chunkSha1"] = sha1(b"x") + payload["chunkSha1"][40:]
    doc = json.dumps(envelope).encode()
    status, answer = await register_list(client, k, doc, chunks.sha1, len(DATA))
    assert (status, answer["error"]) == (400, "chunk_list_invalid"), answer
    assert not (root / "chunks").exists()
    # a chunk size that is not the file's is refused before any upload
    status, answer = await call(client, k, {"type": "initiateChunkList", "hashAlg": "sha1",
                                            "hash": chunks.sha1, "size": len(DATA), "chunkSize": 2 * CS,
                                            "listSha1": sha1(doc), "listSize": len(doc)})
    assert (status, answer["error"]) == (400, "chunk_list_invalid")


async def test_a_conflicting_list_is_refused_and_the_first_stays(local_app: tuple[Client, Path]) -> None:
    client, root = local_app
    daemons = [ClientKeys.generate() for _ in range(3)]
    for k in daemons:
        await register(client, k)
    chunks = chunk_list_of(DATA)
    liar = ChunkList(chunks.sha1, chunks.size, CS, sha1(b"x") + chunks.chunk_sha1[40:])
    docs = [chunks.signed(daemons[0], "default"), liar.signed(daemons[1], "default"),
            chunks.signed(daemons[2], "default")]
    staged = []  # all three initiate before any finalizes
    for k, doc in zip(daemons, docs, strict=True):
        base = {"hashAlg": "sha1", "hash": chunks.sha1, "size": len(DATA), "chunkSize": CS,
                "listSha1": sha1(doc), "listSize": len(doc)}
        status, answer = await call(client, k, {"type": "initiateChunkList", **base})
        assert status == 200 and answer["alreadyExists"] is False
        assert (await client.session.put(answer["signedUploadUrl"], data=doc)).status == 200
        staged.append({"type": "finalizeChunkList", **base, "objectKey": answer["objectKey"]})
    assert (await call(client, daemons[0], staged[0]))[0] == 200
    status, answer = await call(client, daemons[1], staged[1])
    assert (status, answer["error"]) == (409, "chunk_list_conflict"), answer
    assert answer["message"].count(daemons[0].client_id) == 1
    assert (await call(client, daemons[2], staged[2]))[0] == 200  # the same chunks: no conflict
    assert (root / keys.chunk_list_key("", chunks.sha1, CS)).read_bytes() == docs[0]


async def test_a_whole_file_contradicting_its_list(local_app: tuple[Client, Path],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    client, root = local_app
    k = ClientKeys.generate()
    await register(client, k)
    other = bytearray(DATA)
    other[CS + 5] ^= 1  # chunk 1 differs
    true_list = chunk_list_of(DATA)
    liar = ChunkList(true_list.sha1, len(DATA), CS, chunk_list_of(bytes(other)).chunk_sha1)
    assert (await register_list(client, k, liar.signed(k, "default"), liar.sha1, len(DATA)))[0] == 200
    for i in range(3):
        assert (await send_chunk(client, k, liar.sha1, i, piece(bytes(other), i)))[0] == 200
    with caplog.at_level(logging.ERROR, logger="kachery_resource.gateway"):
        assert (await upload(client, k, DATA))[0] == 200
        await client.app[CHUNKS_KEY].idle()
    assert f"signed by client {k.client_id}" in caplog.text and "first bad chunk: 1" in caplog.text
    folder = root / keys.chunk_set("", liar.sha1, CS)
    assert sorted(p.name for p in folder.iterdir()) == ["checked"]
    assert json.loads((folder / "checked").read_text())["ok"] is False
    assert (await find(client, k, liar.sha1, [0]))["wholeFile"] is True
    status, answer = await send_chunk(client, k, liar.sha1, 0, piece(DATA, 0))
    assert (status, answer["error"]) == (409, "chunk_list_refused")
    status, answer = await register_list(client, k, true_list.signed(k, "default"), liar.sha1, len(DATA))
    assert (status, answer["error"]) == (409, "chunk_list_refused")


async def test_the_sweep(tmp_path: Path, aiohttp_client: Any) -> None:
    root = tmp_path / "storage"
    settings = load_settings(storage=str(root), overrides={"chunkMaxAgeSec": 60})
    client = await aiohttp_client(build_app(settings))
    zones, checks = client.app[ZONES_KEY], client.app[CHUNKS_KEY]
    k = ClientKeys.generate()
    await register(client, k)
    whole, lone = chunk_list_of(DATA), chunk_list_of(DATA[:4 * MIB + 1])
    for chunks, data in ((whole, DATA), (lone, DATA[:4 * MIB + 1])):
        assert (await register_list(client, k, chunks.signed(k, "default"), chunks.sha1, len(data)))[0] == 200
        assert (await send_chunk(client, k, chunks.sha1, 0, piece(data, 0)))[0] == 200
    assert (await upload(client, k, DATA))[0] == 200
    await checks.idle()
    marker = root / keys.chunk_checked_key("", whole.sha1, CS)
    assert json.loads(marker.read_text())["ok"] is True
    assert await sweep_unfinished_uploads(settings, zones, checks) == 0  # URLs may be in use
    assert (root / keys.chunk_key("", whole.sha1, CS, 0)).is_file()

    marker.unlink()  # a restart lost the check: the sweep queues it again
    assert await sweep_unfinished_uploads(settings, zones, checks) == 0
    await checks.idle()
    assert json.loads(marker.read_text())["ok"] is True

    aged = json.loads(marker.read_text())
    marker.write_text(json.dumps({**aged, "at": time.time() - settings.download_url_ttl_sec - 5}))
    old = time.time() - 120
    for p in (root / keys.chunk_folder("", lone.sha1)).rglob("*"):
        os.utime(p, (old, old))
    assert await sweep_unfinished_uploads(settings, zones, checks) == 3 + 2
    assert not (root / "chunks").exists()


async def test_rights_and_bad_input(tmp_path: Path, aiohttp_client: Any) -> None:
    settings = load_settings(storage=str(tmp_path / "storage"),
                             overrides={"zones": {"default": {"allowPublicDownload": False}}})
    client = await aiohttp_client(build_app(settings))
    reader, stranger = ClientKeys.generate(), ClientKeys.generate()
    await register(client, reader, upload=False)
    chunks = chunk_list_of(DATA)
    doc = chunks.signed(reader, "default")
    status, answer = await register_list(client, reader, doc, chunks.sha1, len(DATA))
    assert (status, answer["error"]) == (403, "upload_not_allowed")
    status, answer = await call(client, stranger, {"type": "findChunks", "hashAlg": "sha1",
                                                   "hash": chunks.sha1, "indices": [0]})
    assert (status, answer["error"]) == (403, "client_not_registered")
    assert (await find(client, reader, chunks.sha1, [0]))["found"] is False
    base = {"type": "findChunks", "hashAlg": "sha1", "hash": chunks.sha1}
    for bad in ({"indices": []}, {"indices": list(range(65))}, {"indices": [-1]}, {"indices": [65536]},
                {"indices": ["0"]}, {"indices": [0], "chunkSize": CS}):
        status, answer = await call(client, reader, {**base, **bad})
        assert (status, answer["error"]) == (400, "invalid_request"), bad
    status, answer = await call(client, reader, {
        "type": "initiateChunkList", "hashAlg": "sha1", "hash": chunks.sha1, "size": len(DATA),
        "chunkSize": CS, "listSha1": sha1(doc), "listSize": 3_000_001})
    assert (status, answer["error"]) == (400, "invalid_request")
    info = await (await client.get("/api/info")).json()
    assert info["chunkUpload"]["requestTypes"] == sorted(
        ["findChunks", "finalizeChunkList", "finalizeChunkUpload", "initiateChunkList",
         "initiateChunkUpload"])


async def test_a_multipart_upload_and_a_late_list_are_checked(local_app: tuple[Client, Path]) -> None:
    client, root = local_app
    k = ClientKeys.generate()
    await register(client, k)
    checks = client.app[CHUNKS_KEY]
    chunks = chunk_list_of(DATA)
    assert (await register_list(client, k, chunks.signed(k, "default"), chunks.sha1, len(DATA)))[0] == 200
    up = await start(client, k, DATA)
    await put_parts(client, k, up, DATA, [1, 2])
    assert (await finish(client, k, up, len(DATA)))[0] == 200
    await checks.idle()
    assert json.loads((root / keys.chunk_checked_key("", chunks.sha1, CS)).read_text())["ok"] is True
    # a list registered once the whole file is there is checked at once
    late = os.urandom(4 * MIB + 1)
    assert (await upload(client, k, late))[0] == 200
    lied = ChunkList(sha1(late), len(late), CS, sha1(b"a") + sha1(b"b") * 16)  # 17 chunks, none right
    assert (await register_list(client, k, lied.signed(k, "default"), lied.sha1, len(late)))[0] == 200
    await checks.idle()
    marker = json.loads((root / keys.chunk_checked_key("", lied.sha1, CS)).read_text())
    assert (marker["ok"], marker["signer"], marker["index"]) == (False, k.client_id, 0)
    assert not (root / keys.chunk_list_key("", lied.sha1, CS)).exists()


async def test_the_sweep_and_the_listings_it_uses(backend: tuple[Client, Callable[[], list[str]]]) -> None:
    client, listing = backend
    zones, checks = client.app[ZONES_KEY], client.app[CHUNKS_KEY]
    zone = zones["default"]
    for key in ("t/a/1", "t/a/2/x", "t/b.c/1", "t/c/1", "t/d"):
        await zone.storage.write_small(keys.join(zone.prefix, key), b"x")
    root = keys.join(zone.prefix, "t")
    assert await zone.storage.list_folders(root, "", 2) == ["a", "b.c"]
    assert await zone.storage.list_folders(root, "b.c", 2) == ["c"]
    assert await zone.storage.list_folders(keys.join(zone.prefix, "none")) == []
    written = await zone.storage.list_modified(keys.join(root, "a"))
    assert sorted(written) == [keys.join(root, k) for k in ("a/1", "a/2/x")]
    assert all(abs(time.time() - t) < 600 for t in written.values())
    assert b"".join(zone.storage.read_blocks(keys.join(root, "a/1"), 1)) == b"x"

    k = ClientKeys.generate()
    await register(client, k)
    whole, part = chunk_list_of(DATA), chunk_list_of(DATA[:4 * MIB + 1])
    for chunks, data in ((whole, DATA), (part, DATA[:4 * MIB + 1])):
        assert (await register_list(client, k, chunks.signed(k, "default"), chunks.sha1, len(data)))[0] == 200
        assert (await send_chunk(client, k, chunks.sha1, 1, piece(data, 1)))[0] == 200
    assert (await upload(client, k, DATA))[0] == 200
    await checks.idle()
    settings = client.app[SETTINGS_KEY]
    assert await sweep_unfinished_uploads(settings, zones, checks) == 0
    marker = keys.chunk_checked_key(zone.prefix, whole.sha1, CS)
    aged = json.loads(await zone.storage.read_small(marker) or b"")
    assert aged["ok"] is True
    aged["at"] -= settings.download_url_ttl_sec + 5
    await zone.storage.write_small(marker, json.dumps(aged).encode())
    assert await sweep_unfinished_uploads(settings, zones, checks) == 3
    assert listing() == [f"{part.sha1}/{CS}/000001", f"{part.sha1}/{CS}/list.json"]  # written lately
