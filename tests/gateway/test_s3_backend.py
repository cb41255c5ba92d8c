"""The S3 backend in-process against a real SeaweedFS (checks SigV4 and expiry)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kachery_resource.gateway.app import build_app
from kachery_resource.gateway.settings import load_settings
from kachery_resource.identity import ClientKeys

from ..servers import S3Server
from .helpers import Client, call, file_payloads, objects, register, upload


@pytest.fixture
async def s3_app(s3_server: S3Server, aiohttp_client: Any,
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Client, str]]:
    """An in-process gateway on SeaweedFS under a fresh prefix; yields it and the prefix."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    prefix = "t" + uuid.uuid4().hex[:12]
    settings = load_settings(storage=f"s3://{s3_server.bucket}/{prefix}",
                             overrides={"s3EndpointUrl": s3_server.endpoint})
    yield await aiohttp_client(build_app(settings)), prefix


async def test_s3_round_trip_and_mismatch(s3_app: tuple[Client, str], s3_server: S3Server,
                                          client_keys: ClientKeys) -> None:
    client, prefix = s3_app
    await register(client, client_keys)
    data = os.urandom(2_000_000)
    sha1 = hashlib.sha1(data).hexdigest()
    # wrong bytes of the right size: hashed at finalize, refused, staged object deleted
    status, body = await upload(client, client_keys, data, body=os.urandom(len(data)))
    assert status == 400 and body["error"] == "content_mismatch", body
    assert objects(s3_server, prefix) == []
    # wrong size
    status, body = await upload(client, client_keys, data, body=data[:-1])
    assert status == 400 and body["error"] == "content_mismatch"
    assert objects(s3_server, prefix) == []
    # right bytes
    assert await upload(client, client_keys, data) == (200, {"type": "finalizeFileUpload"})
    assert objects(s3_server, prefix) == [f"sha1/{sha1[:2]}/{sha1[2:4]}/{sha1[4:6]}/{sha1}"]
    status, found = await call(client, client_keys, {"type": "findFile", "hashAlg": "sha1", "hash": sha1})
    assert found["found"] and found["size"] == len(data) and found["bucketUri"] == "s3://kachery"
    got = await client.session.get(found["url"])
    assert got.status == 200 and await got.read() == data
    tampered = found["url"].replace("Signature=", "Signature=0")
    assert (await client.session.get(tampered)).status == 403


async def test_s3_empty_file_needs_no_put(s3_app: tuple[Client, str], s3_server: S3Server,
                                          client_keys: ClientKeys) -> None:
    client, prefix = s3_app
    await register(client, client_keys)
    sha1, initiate = file_payloads(b"")
    status, answer = await call(client, client_keys, initiate)
    assert (status, answer) == (200, {"type": "initiateFileUpload", "alreadyExists": True})
    assert objects(s3_server, prefix) == [f"sha1/da/39/a3/{sha1}"]


async def test_s3_upload_url_refuses_other_keys(s3_app: tuple[Client, str], s3_server: S3Server,
                                                client_keys: ClientKeys) -> None:
    client, prefix = s3_app
    await register(client, client_keys)
    _, answer = await call(client, client_keys, file_payloads(b"abc")[1])
    url = answer["signedUploadUrl"]
    assert f"/{prefix}/staging/" in url  # the client never gets a URL for a content key
    moved = url.replace("/staging/", "/sha1/")
    assert (await client.session.put(moved, data=b"abc")).status == 403
    status, body = await call(client, client_keys, {
        "type": "finalizeFileUpload", "objectKey": answer["objectKey"], "hashAlg": "sha1",
        "hash": hashlib.sha1(b"abc").hexdigest(), "size": 3})
    assert status == 400 and body["error"] == "upload_missing"
    assert objects(s3_server, prefix) == []


async def test_s3_overwrite_during_verification_is_refused(
        s3_app: tuple[Client, str], s3_server: S3Server, client_keys: ClientKeys,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes PUT again to the staging URL after hashing never reach the content key."""
    from kachery_resource.gateway.app import ZONES_KEY
    from kachery_resource.gateway.storage.s3 import S3Storage

    client, prefix = s3_app
    await register(client, client_keys)
    storage = client.app[ZONES_KEY]["default"].storage
    assert isinstance(storage, S3Storage)
    original = S3Storage._hash_object

    def hash_then_overwrite(self: S3Storage, key: str) -> tuple[str, int, str]:
        result = original(self, key)
        self.client.put_object(Bucket=self.bucket, Key=key, Body=b"evil")
        return result

    monkeypatch.setattr(S3Storage, "_hash_object", hash_then_overwrite)
    status, body = await upload(client, client_keys, b"good")
    assert status == 409 and body["error"] == "upload_changed", body
    assert objects(s3_server, prefix) == []


async def test_s3_concurrent_uploads_of_one_hash(s3_app: tuple[Client, str], s3_server: S3Server,
                                                 client_keys: ClientKeys) -> None:
    import asyncio

    client, prefix = s3_app
    await register(client, client_keys)
    data = os.urandom(3_000_000)
    sha1 = hashlib.sha1(data).hexdigest()
    results = await asyncio.gather(*(upload(client, client_keys, data) for _ in range(3)))
    assert all(r[0] == 200 for r in results), results
    assert objects(s3_server, prefix) == [f"sha1/{sha1[:2]}/{sha1[2:4]}/{sha1[4:6]}/{sha1}"]
    body = s3_server.client().get_object(Bucket=s3_server.bucket,
                                         Key=f"{prefix}/sha1/{sha1[:2]}/{sha1[2:4]}/{sha1[4:6]}/{sha1}")
    assert body["Body"].read() == data
