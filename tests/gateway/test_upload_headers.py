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
from .helpers import Client, call, file_payloads, register

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


def objects(s3_server: S3Server, prefix: str) -> list[str]:
    """Every key under ``prefix`` but client records."""
    listed = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix + "/")
    return sorted(o["Key"][len(prefix) + 1:] for o in listed.get("Contents", [])
                  if "/clients/" not in o["Key"])


def initiate(data: bytes, **extra: Any) -> dict[str, Any]:
    return {**file_payloads(data)[1], **extra}


def finalize(data: bytes, object_key: str, size: int | None = None) -> dict[str, Any]:
    return {"type": "finalizeFileUpload", "objectKey": object_key, "hashAlg": "sha1",
            "hash": hashlib.sha1(data).hexdigest(), "size": len(data) if size is None else size}


def content_key(data: bytes) -> str:
    return keys.content_key("", hashlib.sha1(data).hexdigest())


async def find(client: Client, keys_: ClientKeys, data: bytes) -> dict[str, Any]:
    status, found = await call(client, keys_, {"type": "findFile", "hashAlg": "sha1",
                                               "hash": hashlib.sha1(data).hexdigest()})
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
    status, answer = await call(client, client_keys, initiate(data, acceptsUploadHeaders=True))
    assert status == 200, answer
    checksum = base64.b64encode(hashlib.sha1(data).digest()).decode()
    assert answer == {"type": "initiateFileUpload", "alreadyExists": False,
                      "objectKey": f"{prefix}/{content_key(data)}",
                      "signedUploadUrl": answer["signedUploadUrl"],
                      "signedUploadHeaders": {HEADER: checksum}}
    put = await client.session.put(answer["signedUploadUrl"], data=data,
                                   headers=answer["signedUploadHeaders"])
    assert put.status == 200, await put.text()
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
    _, answer = await call(client, client_keys, initiate(data, acceptsUploadHeaders=True))
    put = await client.session.put(answer["signedUploadUrl"], data=os.urandom(len(data)),
                                   headers=answer["signedUploadHeaders"])
    assert put.status == 400, await put.text()  # BadDigest
    status, body = await call(client, client_keys, finalize(data, answer["objectKey"]))
    assert status == 400 and body["error"] == "upload_missing", body
    assert (await find(client, client_keys, data)) == {"type": "findFile", "found": False}
    assert objects(s3_server, prefix) == []


async def test_put_without_the_header_is_refused(app: tuple[Client, str], s3_server: S3Server,
                                                 client_keys: ClientKeys) -> None:
    client, prefix = app
    await register(client, client_keys)
    data = b"headers matter"
    _, answer = await call(client, client_keys, initiate(data, acceptsUploadHeaders=True))
    put = await client.session.put(answer["signedUploadUrl"], data=data)
    assert put.status == 403, await put.text()
    assert objects(s3_server, prefix) == []


async def test_the_url_is_bound_to_the_declared_size(app: tuple[Client, str],
                                                     s3_server: S3Server,
                                                     client_keys: ClientKeys) -> None:
    """An uploader may not declare a small size (under maxUploadSize) and PUT a bigger file
    whose sha1 it named: the signed Content-Length refuses it."""
    client, prefix = app
    await register(client, client_keys)
    data = os.urandom(200_000)
    payload = initiate(data, acceptsUploadHeaders=True)
    payload["size"] = 1000  # a lie: the URL must then take exactly 1000 bytes
    _, answer = await call(client, client_keys, payload)
    put = await client.session.put(answer["signedUploadUrl"], data=data,
                                   headers=answer["signedUploadHeaders"])
    assert put.status in (400, 403), await put.text()
    assert objects(s3_server, prefix) == []


async def test_wrong_declared_size_keeps_the_object(app: tuple[Client, str], s3_server: S3Server,
                                                    client_keys: ClientKeys) -> None:
    """A finalize naming the content key may not delete verified content."""
    client, prefix = app
    await register(client, client_keys)
    data = b"stored once, verified by the store"
    _, answer = await call(client, client_keys, initiate(data, acceptsUploadHeaders=True))
    await client.session.put(answer["signedUploadUrl"], data=data,
                             headers=answer["signedUploadHeaders"])
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


async def test_content_key_is_no_object_key_on_a_local_zone(app: tuple[Client, str],
                                                            client_keys: ClientKeys) -> None:
    client, _ = app
    await register(client, client_keys, zone="local")
    data = b"local bytes"
    status, body = await call(client, client_keys, finalize(data, content_key(data)), zone="local")
    assert status == 400 and body["error"] == "object_key_mismatch", body


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

def accept_everything(request: web.Request) -> web.Response:
    """A store that takes any PUT and never has anything to HEAD."""
    return web.Response(status=404 if request.method == "HEAD" else 200)


def refuse_every_put(request: web.Request) -> web.Response:
    """A store that refuses every PUT (so also the right checksum)."""
    return web.Response(status={"PUT": 400, "HEAD": 404}.get(request.method, 204))


@pytest.mark.parametrize("behaviour", [accept_everything, refuse_every_put])
async def test_probe_of_a_store_that_does_not_verify(
        behaviour: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "fake")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake")
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        seen.append(request.method)
        return behaviour(request)

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
