"""Store-verified single uploads: PUTs straight to the content key, checked by the store's
x-amz-checksum-sha1, for clients that send ``acceptsUploadHeaders`` (real SeaweedFS)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import socket
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kachery_resource.gateway import keys
from kachery_resource.gateway.app import ZONES_KEY, build_app
from kachery_resource.gateway.settings import load_settings
from kachery_resource.gateway.storage.s3 import S3Storage
from kachery_resource.identity import ClientKeys

from ..servers import S3Server
from .conftest import GatewayProcess, envelope
from .helpers import Client, call, file_payloads, objects, register

HEADER = "x-amz-checksum-sha1"


@pytest.fixture
async def app(s3_server: S3Server, aiohttp_client: Any, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Client, str]]:
    """An in-process gateway: zone ``default`` on SeaweedFS under a fresh prefix, zone
    ``local`` on a directory; yields it and the S3 prefix."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    prefix = "h" + uuid.uuid4().hex[:12]
    settings = load_settings(storage=f"s3://{s3_server.bucket}/{prefix}", overrides={
        "s3EndpointUrl": s3_server.endpoint,
        "zones": {"default": {}, "local": {"storage": str(tmp_path / "local")}}})
    yield await aiohttp_client(build_app(settings)), prefix


def initiate(data: bytes, **extra: Any) -> dict[str, Any]:
    return {**file_payloads(data)[1], **extra}


def finalize(data: bytes, object_key: str, size: int | None = None) -> dict[str, Any]:
    return {"type": "finalizeFileUpload", "objectKey": object_key, "hashAlg": "sha1",
            "hash": hashlib.sha1(data).hexdigest(), "size": len(data) if size is None else size}


def content_key(data: bytes) -> str:
    return keys.content_key("", hashlib.sha1(data).hexdigest())


async def put_direct(client: Client, keys_: ClientKeys, data: bytes, *, body: bytes | None = None,
                     size: int | None = None, send_headers: bool = True) -> tuple[dict[str, Any], int, str]:
    """initiateFileUpload opted in (declaring ``size``, default ``len(data)``), then a PUT of
    ``body`` (default ``data``) to its URL; the answer, the PUT's status and body."""
    payload = initiate(data, acceptsUploadHeaders=True)
    payload["size"] = len(data) if size is None else size
    status, answer = await call(client, keys_, payload)
    assert status == 200, answer
    put = await client.session.put(answer["signedUploadUrl"], data=data if body is None else body,
                                   headers=answer["signedUploadHeaders"] if send_headers else None)
    return answer, put.status, await put.text()


async def find(client: Client, keys_: ClientKeys, data: bytes,
               zone: str = "default") -> dict[str, Any]:
    status, found = await call(client, keys_, {"type": "findFile", "hashAlg": "sha1",
                                               "hash": hashlib.sha1(data).hexdigest()}, zone=zone)
    assert status == 200, found
    return found


async def test_probe_says_seaweedfs_verifies(app: tuple[Client, str], s3_server: S3Server) -> None:
    client, prefix = app
    zones = client.app[ZONES_KEY]  # type: ignore[index]
    assert zones["default"].storage.verifies_sha1 is True
    assert zones["local"].storage.verifies_sha1 is False
    info = await (await client.get("/api/info")).json()
    assert info["uploadHeaders"] is True
    assert objects(s3_server, prefix) == []  # the probe object is gone


async def test_store_verified_upload(app: tuple[Client, str], s3_server: S3Server,
                                     client_keys: ClientKeys) -> None:
    client, prefix = app
    await register(client, client_keys)
    data = os.urandom(1_500_000)
    sha1 = hashlib.sha1(data).hexdigest()
    answer, status, text = await put_direct(client, client_keys, data)
    assert status == 200, text
    checksum = base64.b64encode(hashlib.sha1(data).digest()).decode()
    assert answer == {"type": "initiateFileUpload", "alreadyExists": False,
                      "objectKey": f"{prefix}/{content_key(data)}",
                      "signedUploadUrl": answer["signedUploadUrl"],
                      "signedUploadHeaders": {HEADER: checksum}}
    status, done = await call(client, client_keys, finalize(data, answer["objectKey"]))
    assert (status, done) == (200, {"type": "finalizeFileUpload"})
    found = await find(client, client_keys, data)
    assert found["found"] and found["size"] == len(data)
    got = await (await client.session.get(found["url"])).read()
    assert hashlib.sha1(got).hexdigest() == sha1
    assert objects(s3_server, prefix) == [content_key(data)]  # nothing staged
    # once it exists, initiate says so, as for every client
    status, again = await call(client, client_keys, initiate(data, acceptsUploadHeaders=True))
    assert (status, again) == (200, {"type": "initiateFileUpload", "alreadyExists": True})


async def test_store_refuses_other_bytes(app: tuple[Client, str], s3_server: S3Server,
                                         client_keys: ClientKeys) -> None:
    client, prefix = app
    await register(client, client_keys)
    data = os.urandom(500_000)
    answer, status, text = await put_direct(client, client_keys, data, body=os.urandom(len(data)))
    assert status == 400, text  # BadDigest
    status, body = await call(client, client_keys, finalize(data, answer["objectKey"]))
    assert status == 400 and body["error"] == "upload_missing", body
    assert (await find(client, client_keys, data)) == {"type": "findFile", "found": False}
    assert objects(s3_server, prefix) == []


@pytest.mark.parametrize(("how", "refused_with"), [
    ({"send_headers": False}, {403}),  # the checksum header is signed: it must be sent
    # a lie (under maxUploadSize) about a bigger file whose sha1 it names: the signed
    # Content-Length refuses it
    ({"size": 1000}, {400, 403}),
], ids=["without-the-header", "bigger-than-declared"])
async def test_puts_not_as_signed_are_refused(app: tuple[Client, str], s3_server: S3Server,
                                              client_keys: ClientKeys, how: dict[str, Any],
                                              refused_with: set[int]) -> None:
    client, prefix = app
    await register(client, client_keys)
    _, status, text = await put_direct(client, client_keys, os.urandom(200_000), **how)
    assert status in refused_with, text
    assert objects(s3_server, prefix) == []


async def test_wrong_declared_size_keeps_the_object(app: tuple[Client, str], s3_server: S3Server,
                                                    client_keys: ClientKeys) -> None:
    """A finalize naming the content key may not delete verified content."""
    client, prefix = app
    await register(client, client_keys)
    data = b"stored once, verified by the store"
    answer, status, text = await put_direct(client, client_keys, data)
    assert status == 200, text
    status, body = await call(client, client_keys, finalize(data, answer["objectKey"], size=1))
    assert status == 400 and body["error"] == "content_mismatch", body
    assert objects(s3_server, prefix) == [content_key(data)]


async def test_confirm_accepts_content_without_checksum(app: tuple[Client, str],
                                                        s3_server: S3Server,
                                                        client_keys: ClientKeys) -> None:
    """Content promoted by the staging path has no stored checksum; its size is enough."""
    client, prefix = app
    await register(client, client_keys)
    data = b"promoted earlier"
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=f"{prefix}/{content_key(data)}",
                                  Body=data)
    status, done = await call(client, client_keys, finalize(data, f"{prefix}/{content_key(data)}"))
    assert (status, done) == (200, {"type": "finalizeFileUpload"})


async def test_clients_without_the_opt_in_are_staged(app: tuple[Client, str],
                                                     client_keys: ClientKeys) -> None:
    """kachery-cloud's request, and any request to a local zone, get today's answer."""
    client, prefix = app
    await register(client, client_keys)
    await register(client, client_keys, zone="local")
    data = b"the usual way"
    sha1 = hashlib.sha1(data).hexdigest()
    for zone, extra, head in [("default", {}, f"{prefix}/staging/{sha1}/"),
                              ("default", {"acceptsUploadHeaders": False}, f"{prefix}/staging/{sha1}/"),
                              ("local", {"acceptsUploadHeaders": True}, f"staging/{sha1}/")]:
        status, answer = await call(client, client_keys, initiate(data, **extra), zone=zone)
        assert status == 200, answer
        assert set(answer) == {"type", "alreadyExists", "objectKey", "signedUploadUrl"}
        assert answer["objectKey"].startswith(head)
    # the local zone's staging upload still completes
    put = await client.session.put(answer["signedUploadUrl"], data=data)
    assert put.status == 200
    status, done = await call(client, client_keys, finalize(data, answer["objectKey"]), zone="local")
    assert (status, done) == (200, {"type": "finalizeFileUpload"})


async def test_finalize_of_a_content_key_only_confirms(app: tuple[Client, str],
                                                       client_keys: ClientKeys) -> None:
    """Any storage answers a finalize naming the content key (the URL may have come from
    another gateway instance whose probe passed): there, or not; nothing becomes readable."""
    client, _ = app
    await register(client, client_keys, zone="local")
    data = b"local bytes"
    status, body = await call(client, client_keys, finalize(data, content_key(data)), zone="local")
    assert status == 400 and body["error"] == "upload_missing", body
    _, answer = await call(client, client_keys, initiate(data), zone="local")
    assert (await client.session.put(answer["signedUploadUrl"], data=data)).status == 200
    status, body = await call(client, client_keys, finalize(data, content_key(data)), zone="local")
    assert status == 400 and body["error"] == "upload_missing", body  # staged is not stored
    await call(client, client_keys, finalize(data, answer["objectKey"]), zone="local")
    status, body = await call(client, client_keys, finalize(data, content_key(data)), zone="local")
    assert (status, body) == (200, {"type": "finalizeFileUpload"})
    status, body = await call(client, client_keys, finalize(data, content_key(data), size=3),
                              zone="local")
    assert status == 400 and body["error"] == "content_mismatch", body
    assert (await find(client, client_keys, data, zone="local"))["found"]


async def test_confirm_deletes_content_whose_checksum_is_wrong(app: tuple[Client, str],
                                                              s3_server: S3Server,
                                                              client_keys: ClientKeys) -> None:
    """Defence in depth: bytes under a content key whose stored checksum is another sha1."""
    client, prefix = app
    await register(client, client_keys)
    data, other = b"what the key names", b"what was put there"
    key = f"{prefix}/{content_key(data)}"
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=key, Body=other,
                                  ChecksumSHA1=base64.b64encode(hashlib.sha1(other).digest()).decode())
    status, body = await call(client, client_keys, finalize(data, key))
    assert status == 400 and body["error"] == "content_mismatch", body
    assert objects(s3_server, prefix) == []


@pytest.mark.parametrize("value", ["true", 1, None, [True]])
async def test_accepts_upload_headers_must_be_a_bool(local_app: tuple[Client, Path],
                                                     client_keys: ClientKeys, value: Any) -> None:
    client, _ = local_app
    await register(client, client_keys)
    status, body = await call(client, client_keys, initiate(b"x", acceptsUploadHeaders=value))
    assert status == 400 and body["error"] == "invalid_request", body
    assert "acceptsUploadHeaders" in body["message"]


def test_the_gateway_command_probes(s3_gateway: GatewayProcess, client_keys: ClientKeys) -> None:
    """`kachery-resource gateway` on S3 hands out store-verified URLs (its probe ran)."""
    s3_gateway.add_client(client_keys, "--upload")
    body = json.dumps(envelope(client_keys, initiate(b"cli", acceptsUploadHeaders=True))).encode()
    request = urllib.request.Request(f"{s3_gateway.url}/api/gateway", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        answer = json.loads(resp.read())
    assert answer["signedUploadHeaders"] == {
        HEADER: base64.b64encode(hashlib.sha1(b"cli").digest()).decode()}
    assert "the store checks each upload's sha1 (x-amz-checksum-sha1)" in s3_gateway.server.text()


# The probe's negative path: stores that do not behave as checksum-verifying ones.

class FakeStore:
    """Keeps what is PUT, with the checksum header it came with, and answers HEAD with it;
    ``verify`` decides what a PUT whose body does not match its header gets."""

    def __init__(self, verify: str) -> None:
        self.verify = verify  # "never", "refuse-403" (not a digest error), "refuse-all"
        self.objects: dict[str, tuple[bytes, str]] = {}

    def __call__(self, request: web.Request, body: bytes) -> web.Response:
        key, header = request.path, request.headers.get(HEADER, "")
        if request.method == "PUT":
            right = base64.b64encode(hashlib.sha1(body).digest()).decode() == header
            if self.verify == "refuse-all" or (not right and self.verify == "refuse-403"):
                return web.Response(status=403, text="<Error><Code>AccessDenied</Code></Error>")
            self.objects[key] = (body, header)
            return web.Response(status=200)
        if request.method == "HEAD":
            if key not in self.objects:
                return web.Response(status=404)
            data, checksum = self.objects[key]
            return web.Response(status=200, headers={
                "ETag": f'"{hashlib.md5(data).hexdigest()}"', "x-amz-checksum-sha1": checksum})
        self.objects.pop(key, None)
        return web.Response(status=204)


@pytest.mark.parametrize(("verify", "why"), [
    ("never", "a PUT of other bytes was answered 200, not a digest error"),
    ("refuse-403", "a PUT of other bytes was answered 403 AccessDenied, not a digest error"),
    ("refuse-all", "a PUT with the right checksum was answered 403 AccessDenied")],
    ids=["keeps-without-checking", "refuses-for-another-reason", "refuses-everything"])
async def test_probe_of_a_store_that_does_not_verify(
        verify: str, why: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A store that keeps a checksum without checking it, one that refuses other bytes for
    some other reason than their digest, one that refuses every PUT: none is trusted."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "fake")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake")
    seen: list[str] = []
    behaviour = FakeStore(verify)

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.method)
        return behaviour(request, await request.read())

    fake = web.Application()
    fake.router.add_route("*", "/{tail:.*}", handle)
    async with TestServer(fake) as server:
        storage = S3Storage("bucket", str(server.make_url("")).rstrip("/"))
        with caplog.at_level(logging.INFO, logger="kachery_resource.gateway"):
            await storage.probe("staging")
        await storage.close()
    assert storage.verifies_sha1 is False
    assert "PUT" in seen and "DELETE" in seen  # it really asked, and cleaned up
    assert "uploads on it are verified by reading them back" in caplog.text
    assert why in caplog.text and why in storage.not_verified_because


async def test_probe_of_an_unreachable_store(monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "fake")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    storage = S3Storage("bucket", f"http://127.0.0.1:{port}")
    with caplog.at_level(logging.INFO, logger="kachery_resource.gateway"):
        await storage.probe("staging")
    await storage.close()
    assert storage.verifies_sha1 is False
    assert "reading them back" in caplog.text
    assert storage.not_verified_because.startswith("the probe failed: ")
