"""Bad input: each a clear 4xx in the one error shape, with nothing stored."""

from __future__ import annotations

import errno
import hashlib
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from kachery_resource.gateway.app import ZONES_KEY
from kachery_resource.identity import ClientKeys

from .conftest import envelope, stored_files
from .helpers import Client, call, chunked, file_payloads, register, upload

SHA1 = hashlib.sha1(b"data").hexdigest()
FIND = {"type": "findFile", "hashAlg": "sha1", "hash": SHA1}


def assert_error(status: int, body: dict[str, Any], expected_status: int, code: str) -> None:
    assert status == expected_status, body
    assert set(body) == {"error", "message", "status"}
    assert body["error"] == code
    assert body["status"] == expected_status
    assert len(body["message"]) > 20


async def post_raw(client: Client, data: bytes) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/api/gateway", data=data,
                             headers={"Content-Type": "application/json"})
    return resp.status, await resp.json()


async def test_malformed_json(local_app: tuple[Client, Path]) -> None:
    client, root = local_app
    status, body = await post_raw(client, b'{"payload": {"type": ')
    assert_error(status, body, 400, "invalid_json")
    status, body = await post_raw(client, b"[1, 2]")
    assert_error(status, body, 400, "invalid_request")
    assert stored_files(root) == []


async def test_oversize_body(local_app: tuple[Client, Path], client_keys: ClientKeys) -> None:
    client, root = local_app
    await register(client, client_keys)
    payload = {**file_payloads(b"x")[1], "padding": "x" * 100_000}
    status, body = await post_raw(client, repr(envelope(client_keys, payload)).encode())
    assert_error(status, body, 413, "body_too_large")
    # The same without a Content-Length (chunked) is cut off too.
    resp = await client.post("/api/gateway", data=chunked(b"{" + b" " * 70_000, b"}"))
    assert_error(resp.status, await resp.json(), 413, "body_too_large")
    assert stored_files(root) == []


@pytest.mark.parametrize(("mutate", "needle"), [
    (lambda p: p.pop("hash"), "payload.hash: Field required"),
    (lambda p: p.update(extra=1), "payload.extra: unexpected field"),
    (lambda p: p.update(hashAlg="md5"), "payload.hashAlg"),
    (lambda p: p.update(hash=SHA1.upper()), "40 lowercase hexadecimal"),
    (lambda p: p.update(size=-1), "payload.size"),
    (lambda p: p.update(size=True), "payload.size"),
    (lambda p: p.update(size="10"), "payload.size"),
    (lambda p: p.update(timestamp=float(p["timestamp"])), "payload.timestamp"),
    (lambda p: p.update(zone="../other"), "payload.zone"),
])
async def test_payload_schema(local_app: tuple[Client, Path], client_keys: ClientKeys,
                              mutate: Any, needle: str) -> None:
    client, root = local_app
    await register(client, client_keys)
    payload = {**file_payloads(b"data")[1], "zone": "default", "timestamp": int(time.time() * 1000)}
    mutate(payload)
    body = {"payload": payload, "fromClientId": client_keys.client_id,
            "signature": client_keys.sign(payload)}
    resp = await client.post("/api/gateway", json=body)
    data = await resp.json()
    assert_error(resp.status, data, 400, "invalid_request")
    assert needle in data["message"]
    assert stored_files(root) == []


@pytest.mark.parametrize(("mutate", "needle"), [
    (lambda e: e.pop("signature"), "signature: Field required"),
    (lambda e: e.update(extra="x"), "extra: unexpected field"),
    (lambda e: e.update(fromClientId="../" + "a" * 61), "fromClientId"),
    (lambda e: e.update(signature="zz" * 64), "signature"),
    (lambda e: e.update(payload="not an object"), "payload"),
])
async def test_envelope_schema(local_app: tuple[Client, Path], client_keys: ClientKeys,
                               mutate: Any, needle: str) -> None:
    client, _ = local_app
    body = envelope(client_keys, FIND)
    mutate(body)
    resp = await client.post("/api/gateway", json=body)
    data = await resp.json()
    assert_error(resp.status, data, 400, "invalid_request")
    assert needle in data["message"]


async def test_unknown_type_and_zone(local_app: tuple[Client, Path], client_keys: ClientKeys) -> None:
    client, _ = local_app
    status, body = await call(client, client_keys, {"type": "setMutable"})
    assert_error(status, body, 400, "unknown_request_type")
    status, body = await call(client, client_keys, FIND, zone="nozone")
    assert_error(status, body, 404, "unknown_zone")


async def test_tampered_signature(local_app: tuple[Client, Path], client_keys: ClientKeys) -> None:
    client, root = local_app
    await register(client, client_keys)
    body = envelope(client_keys, file_payloads(b"data")[1])
    body["payload"]["size"] = 5  # signed with size 4
    resp = await client.post("/api/gateway", json=body)
    assert_error(resp.status, await resp.json(), 401, "invalid_signature")
    other = ClientKeys.generate()  # signed by someone else
    body = envelope(other, file_payloads(b"data")[1])
    body["fromClientId"] = client_keys.client_id
    resp = await client.post("/api/gateway", json=body)
    assert_error(resp.status, await resp.json(), 401, "invalid_signature")
    assert stored_files(root) == []


@pytest.mark.parametrize(("offset_sec", "word"), [(-300, "behind"), (200, "ahead of")])
async def test_stale_timestamp_names_skew(local_app: tuple[Client, Path], client_keys: ClientKeys,
                                          offset_sec: int, word: str) -> None:
    client, root = local_app
    await register(client, client_keys)
    ts = int((time.time() + offset_sec) * 1000)
    status, body = await call(client, client_keys, file_payloads(b"data")[1], timestamp=ts)
    assert_error(status, body, 401, "timestamp_out_of_window")
    assert f"{abs(offset_sec)}." in body["message"] and word in body["message"]
    assert "±125 s" in body["message"]
    # inside the window is fine
    ts = int((time.time() + 100) * 1000)
    status, body = await call(client, client_keys, FIND, timestamp=ts)
    assert status == 200 and body == {"type": "findFile", "found": False}
    assert stored_files(root) == []


async def test_unregistered_uploader(local_app: tuple[Client, Path], client_keys: ClientKeys) -> None:
    client, root = local_app
    status, body = await call(client, client_keys, file_payloads(b"data")[1])
    assert_error(status, body, 403, "client_not_registered")
    assert "kachery-cloud-init" in body["message"]
    status, body = await call(client, client_keys, {
        "type": "finalizeFileUpload", "objectKey": f"staging/{SHA1}/{'0' * 32}", "hashAlg": "sha1",
        "hash": SHA1, "size": 4})
    assert_error(status, body, 403, "client_not_registered")
    await register(client, client_keys, upload=False)
    status, body = await call(client, client_keys, file_payloads(b"data")[1])
    assert_error(status, body, 403, "upload_not_allowed")
    assert stored_files(root) == []


@pytest.mark.parametrize("object_key", [
    "sha1/a1/7c/9a/" + SHA1,                                  # the content key: only confirmed
    f"staging/{hashlib.sha1(b'other').hexdigest()}/{'0' * 32}",   # another hash's staging key
    f"staging/{SHA1}/../../../etc/passwd",                    # traversal
    f"/staging/{SHA1}/{'0' * 32}",                            # absolute
    f"staging/{SHA1}/notanuploadid",
])
async def test_finalize_object_key_must_match_hash(local_app: tuple[Client, Path],
                                                   client_keys: ClientKeys, object_key: str) -> None:
    client, root = local_app
    await register(client, client_keys)
    status, answer = await call(client, client_keys, file_payloads(b"data")[1])
    put = await client.session.put(answer["signedUploadUrl"], data=b"data")
    assert put.status == 200
    status, body = await call(client, client_keys, {
        "type": "finalizeFileUpload", "objectKey": object_key, "hashAlg": "sha1", "hash": SHA1,
        "size": 4})
    assert status == 400, body
    assert body["error"] in {"object_key_mismatch", "invalid_key", "upload_missing"}
    assert not any(f.startswith("sha1/") for f in stored_files(root))


async def test_bytes_not_matching_declared_sha1(local_app: tuple[Client, Path],
                                                client_keys: ClientKeys) -> None:
    client, root = local_app
    await register(client, client_keys)
    status, body = await upload(client, client_keys, b"data", body=b"DATA")
    assert_error(status, body, 400, "content_mismatch")
    assert SHA1 in body["message"] and hashlib.sha1(b"DATA").hexdigest() in body["message"]
    assert stored_files(root) == []  # the staged upload was deleted too
    status, body = await upload(client, client_keys, b"data", body=b"dat")  # short
    assert_error(status, body, 400, "content_mismatch")
    assert stored_files(root) == []
    # finalize without any PUT
    status, answer = await call(client, client_keys, file_payloads(b"data")[1])
    status, body = await call(client, client_keys, {
        "type": "finalizeFileUpload", "objectKey": answer["objectKey"], "hashAlg": "sha1",
        "hash": SHA1, "size": 4})
    assert_error(status, body, 400, "upload_missing")
    # an empty file declared with a non-empty hash
    status, body = await call(client, client_keys, {**file_payloads(b"data")[1], "size": 0})
    assert_error(status, body, 400, "content_mismatch")
    assert stored_files(root) == []


async def test_put_larger_than_declared(local_app: tuple[Client, Path], client_keys: ClientKeys) -> None:
    client, root = local_app
    await register(client, client_keys)
    _, answer = await call(client, client_keys, file_payloads(b"data")[1])
    put = await client.session.put(answer["signedUploadUrl"], data=b"data and more")
    assert_error(put.status, await put.json(), 413, "upload_too_large")
    put = await client.session.put(answer["signedUploadUrl"], data=chunked(b"data", b" and more"))
    assert_error(put.status, await put.json(), 413, "upload_too_large")
    assert stored_files(root) == []


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


async def test_tampered_and_expired_urls(local_app: tuple[Client, Path], client_keys: ClientKeys) -> None:
    client, root = local_app
    await register(client, client_keys)
    _, answer = await call(client, client_keys, file_payloads(b"data")[1])
    url = answer["signedUploadUrl"]
    sig = dict(parse_qsl(urlsplit(url).query))["signature"]
    bad = [
        _with_query(url, signature=("0" if sig[0] != "0" else "1") + sig[1:]),
        _with_query(url, maxSize="999999"),
        _with_query(url, expires=str(int(time.time()) + 99999)),
        url.replace("/staging/", "/staging2/"),
        _with_query(url, method="GET"),
    ]
    for u in bad:
        put = await client.session.put(u, data=b"data")
        assert_error(put.status, await put.json(), 403, "invalid_url_signature")
    # a GET URL cannot be used to PUT, a PUT URL cannot be used to GET
    get = await client.session.get(url)
    assert get.status == 403
    assert stored_files(root) == []
    # expired: sign with a negative lifetime
    storage = client.app[ZONES_KEY]["default"].storage
    key = answer["objectKey"]
    base = f"http://{client.host}:{client.port}"
    expired = storage.signer.url(base, "PUT", "default", key, -5, 4)  # type: ignore[attr-defined]
    put = await client.session.put(expired, data=b"data")
    body = await put.json()
    assert_error(put.status, body, 403, "url_expired")
    assert stored_files(root) == []
    # and an expired download URL
    status, _ = await upload(client, client_keys, b"data")
    assert status == 200
    content = f"sha1/{SHA1[:2]}/{SHA1[2:4]}/{SHA1[4:6]}/{SHA1}"
    old = storage.signer.url(base, "GET", "default", content, -1)  # type: ignore[attr-defined]
    assert (await client.session.get(old)).status == 403
    good = storage.signer.url(base, "GET", "default", content, 60)  # type: ignore[attr-defined]
    assert await (await client.session.get(good)).read() == b"data"


@pytest.mark.parametrize("path", [
    "/files/default/..%2F..%2Fetc%2Fpasswd",
    "/files/default/sha1/../../.kachery-gateway-secret",
    "/files/default/.kachery-gateway-secret",
    "/files/default/clients/%2e%2e/%2e%2e/x",
    "/files/..%2F/sha1/x",
    "/registerClient/..%2F..%2Fetc?signature=00",
    "/client/..%2F" + "a" * 61,
])
async def test_path_traversal(local_app: tuple[Client, Path], path: str) -> None:
    client, root = local_app
    for method in ("GET", "PUT"):
        resp = await client.request(method, path, data=b"x" if method == "PUT" else None)
        assert 400 <= resp.status < 500, (method, path, resp.status)
        if resp.content_type == "application/json":
            assert set(await resp.json()) == {"error", "message", "status"}
    assert stored_files(root) == []


async def test_hash_traversal_in_payload(local_app: tuple[Client, Path], client_keys: ClientKeys) -> None:
    client, _ = local_app
    await register(client, client_keys)
    for h in ["../../../../etc/passwd", "ab/../" + "a" * 34, "a" * 39 + "/"]:
        status, body = await call(client, client_keys, {**FIND, "hash": h})
        assert_error(status, body, 400, "invalid_request")


async def test_a_full_disk_is_a_clear_507(local_app: tuple[Client, Path], client_keys: ClientKeys,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """No space left on the storage's device: 507 storage_full says so (not a bare 500),
    and nothing is stored."""
    client, root = local_app
    await register(client, client_keys)
    _, answer = await call(client, client_keys, file_payloads(b"data")[1])

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("kachery_resource.gateway.storage.local._write_received", full)
    put = await client.session.put(answer["signedUploadUrl"], data=b"data")
    body = await put.json()
    assert_error(put.status, body, 507, "storage_full")
    assert "storage is full" in body["message"]
    assert stored_files(root) == []
