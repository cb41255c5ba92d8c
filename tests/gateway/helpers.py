"""Small helpers for gateway tests (in-process apps, and storing through a real gateway)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import requests
from aiohttp.test_utils import TestClient

from kachery_resource.gateway.api_v2 import has_work
from kachery_resource.gateway.app import ZONES_KEY
from kachery_resource.gateway.registry import ClientRecord, now_ms
from kachery_resource.identity import ClientKeys

from ..servers import S3Server
from .conftest import envelope

Client = TestClient[Any, Any]


async def register(client: Client, keys: ClientKeys, *, upload: bool = True, download: bool = True,
                   admin: bool = False, zone: str = "default") -> None:
    """Write an approved client record straight into the zone's registry."""
    registry = client.app[ZONES_KEY][zone].registry  # type: ignore[index]
    await registry.put(ClientRecord(clientId=keys.client_id, zone=zone, label="test", ownerId="t",
                                    timestampCreated=now_ms(), approved=True, upload=upload,
                                    download=download, admin=admin))


async def call(client: Client, keys: ClientKeys, payload: dict[str, Any],
               **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """POST a signed call; returns (status, JSON body)."""
    resp = await client.post("/api/gateway", json=envelope(keys, payload, **kwargs))
    return resp.status, await resp.json()


def file_payloads(data: bytes) -> tuple[str, dict[str, Any]]:
    """(sha1, initiate payload) for ``data``."""
    sha1 = hashlib.sha1(data).hexdigest()
    return sha1, {"type": "initiateFileUpload", "size": len(data), "hashAlg": "sha1", "hash": sha1}


async def upload(client: Client, keys: ClientKeys, data: bytes,
                 body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    """initiate → PUT ``body`` (default ``data``) → finalize; returns finalize's answer."""
    sha1, initiate = file_payloads(data)
    status, answer = await call(client, keys, initiate)
    assert status == 200, answer
    if answer["alreadyExists"]:
        return 200, {"alreadyExists": True}
    put = await client.session.put(answer["signedUploadUrl"], data=data if body is None else body)
    assert put.status == 200, await put.text()
    return await call(client, keys, {"type": "finalizeFileUpload", "objectKey": answer["objectKey"],
                                     "hashAlg": "sha1", "hash": sha1, "size": len(data)})


async def chunked(*parts: bytes) -> AsyncIterator[bytes]:
    """A request body sent with Transfer-Encoding: chunked."""
    for part in parts:
        yield part


def objects(s3_server: S3Server, prefix: str) -> list[str]:
    """Every key under ``prefix`` in the test bucket but client records."""
    listed = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix + "/")
    return sorted(o["Key"][len(prefix) + 1:] for o in listed.get("Contents", [])
                  if "/clients/" not in o["Key"])


def store_v2(gateway: str, key: str, data: bytes, zone: str) -> str:
    """Store ``data`` in ``zone`` through the kachery 2.x API of the gateway process at
    ``gateway`` (work token, PUT, finalize); returns its sha1."""
    sha1 = hashlib.sha1(data).hexdigest()
    token = next(t for t in (os.urandom(8).hex() for _ in range(1 << 20)) if has_work(t, sha1))
    auth = {"Authorization": f"Bearer {key}"}
    common = {"hashAlg": "sha1", "hash": sha1, "zoneName": zone, "size": len(data)}
    init = requests.post(f"{gateway}/api/initiateFileUpload", headers=auth, timeout=30, json={
        "type": "initiateFileUploadRequest", "workToken": token, **common}).json()
    assert requests.put(init["signedUploadUrl"], data=data, timeout=30).status_code == 200
    done = requests.post(f"{gateway}/api/finalizeFileUpload", headers=auth, timeout=30, json={
        "type": "finalizeFileUploadRequest", "objectKey": init["objectKey"], **common})
    assert done.json()["success"] is True
    return sha1
