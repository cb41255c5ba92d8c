"""Security matrix of the gateway: every entry point with every kind of credential.

Entry points (``gateway/app.py``): ``POST /api/gateway`` with each request type (the five
kachery-cloud 0.4.10 sends, the five multipart extensions and the announcements of
resources, the five chunk requests), the signed object URLs ``GET|HEAD|PUT /files/{zone}/{key}``,
``GET /registerClient/{id}``, and the public ``GET /client/{id}``, ``/api/info``,
``/healthz``, ``/metrics``, ``/openapi.json``. The kachery 2.x API (``POST /api/findFile``
…) is in test_gateway_v2_matrix.py, a second announcer and replayed announcements in
test_gateway_announcements.py.

Credentials of a gateway call: an Ed25519 signature of the payload by ``fromClientId``,
a timestamp inside the window, and the signer's rights in the payload's zone. Kinds
tried: none, a wrong signature, a signature of another payload, another zone's client,
a client without the right, an expired (and a future) timestamp, a replayed envelope.
kachery-cloud sends no nonce, so the same envelope replayed inside the window is
accepted (every call is idempotent); once the window has passed it is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from kachery_resource.gateway import keys
from kachery_resource.gateway.app import ZONES_KEY, build_app
from kachery_resource.gateway.settings import load_settings
from kachery_resource.identity import ClientKeys

from ..gateway.conftest import envelope
from ..gateway.helpers import register

pytestmark = pytest.mark.timeout(120)

Client = TestClient[Any, Any]
WINDOW = 6.0
DATA = b"matrix file\n"
SHA = hashlib.sha1(DATA).hexdigest()
NEW = hashlib.sha1(b"never uploaded").hexdigest()
MIB4 = 4 * 1024 * 1024
REFUSALS = {"invalid_request", "invalid_signature", "timestamp_out_of_window",
            "client_not_registered", "upload_not_allowed", "download_not_allowed", "admin_only"}


@pytest.fixture
async def gw(tmp_path: Path, aiohttp_client: Any) -> tuple[Client, dict[str, ClientKeys]]:
    """Two private zones (``default`` and ``zB``) on one directory, and five signers."""
    settings = load_settings(storage=str(tmp_path / "storage"), overrides={
        "timestampWindowSec": WINDOW,
        "zones": {"default": {"allowPublicDownload": False},
                  "zB": {"prefix": "zb", "allowPublicDownload": False}}})
    client = await aiohttp_client(build_app(settings))
    who = {n: ClientKeys.generate() for n in ("owner", "reader", "other_zone", "admin", "stranger")}
    await register(client, who["owner"])
    await register(client, who["reader"], upload=False)
    await register(client, who["other_zone"], zone="zB")
    await register(client, who["admin"], admin=True)
    status, _ = await post(client, envelope(who["owner"], {"type": "initiateFileUpload",
                                                           "hashAlg": "sha1", "hash": SHA,
                                                           "size": len(DATA)}))
    assert status == 200
    await upload(client, who["owner"], DATA)
    return client, who


async def post(client: Client, body: Any) -> tuple[int, dict[str, Any]]:
    r = await client.post("/api/gateway", json=body)
    return r.status, await r.json()


async def upload(client: Client, signer: ClientKeys, data: bytes) -> None:
    sha1 = hashlib.sha1(data).hexdigest()
    _, a = await post(client, envelope(signer, {"type": "initiateFileUpload", "hashAlg": "sha1",
                                                "hash": sha1, "size": len(data)}))
    if a.get("alreadyExists"):
        return
    put = await client.session.put(a["signedUploadUrl"], data=data)
    assert put.status == 200
    status, done = await post(client, envelope(signer, {
        "type": "finalizeFileUpload", "hashAlg": "sha1", "hash": sha1, "size": len(data),
        "objectKey": a["objectKey"]}))
    assert status == 200, done


RESOURCE = "http://127.0.0.1:9/r/matrix"
ALL = {"owner", "reader", "other_zone", "admin", "stranger"}
UPLOADERS = {"owner", "admin"}


def call_types() -> dict[str, tuple[dict[str, Any], set[str]]]:
    """Every request type of ``POST /api/gateway``: one well-formed payload and the signers
    that pass its credential checks in zone default (staging keys made up: a request that
    passes the checks may still fail later, but not with a refusal). A new call type is
    one row here."""
    staging = keys.staging_key("", NEW, keys.new_upload_id())
    mp = keys.multipart_key("", NEW, keys.new_upload_id())
    h = {"hashAlg": "sha1", "hash": NEW}
    chunk_list = {**h, "size": 3 * MIB4, "chunkSize": MIB4, "listSha1": SHA, "listSize": 500}
    chunk_staging = keys.staging_key("", SHA, keys.new_upload_id())
    return {
        "getClientInfo": ({"clientId": "0" * 64}, ALL),
        "findFile": ({"hashAlg": "sha1", "hash": SHA}, {"owner", "reader", "admin"}),
        "initiateFileUpload": ({**h, "size": 5}, UPLOADERS),
        "finalizeFileUpload": ({**h, "size": 5, "objectKey": staging}, UPLOADERS),
        "deleteFile": ({**h}, {"admin"}),
        "initiateMultipartUpload": ({**h, "size": 10, "partSize": 10}, UPLOADERS),
        "getMultipartUploadUrls": ({**h, "objectKey": mp, "partNumbers": [1]}, UPLOADERS),
        "listMultipartParts": ({**h, "objectKey": mp}, UPLOADERS),
        "completeMultipartUpload": ({**h, "objectKey": mp, "size": 10}, UPLOADERS),
        "abortMultipartUpload": ({**h, "objectKey": mp}, UPLOADERS),
        # a withdrawal first, so that each uploader's announcement is its own (the one of
        # another client's live announcement, a 409, is in test_gateway_announcements.py)
        "withdrawResource": ({"resourceUrl": RESOURCE}, UPLOADERS),
        "announceResource": ({"resourceUrl": RESOURCE}, UPLOADERS),
        # chunk uploads (docs/design-chunks.md): uploaders send lists and chunks, readers
        # find them; made-up keys and lists fail after the checks, never as a refusal
        "initiateChunkList": (chunk_list, UPLOADERS),
        "finalizeChunkList": ({**chunk_list, "objectKey": chunk_staging}, UPLOADERS),
        "initiateChunkUpload": ({**h, "chunkSize": MIB4, "indices": [0]}, UPLOADERS),
        "finalizeChunkUpload": ({**h, "chunkSize": MIB4, "index": 0, "objectKey": chunk_staging},
                                UPLOADERS),
        "findChunks": ({**h, "indices": [0]}, {"owner", "reader", "admin"}),
    }


def forged(who: dict[str, ClientKeys], kind: str, payload: dict[str, Any]) -> Any:
    """An envelope of a bad credential ``kind`` for the owner's ``payload``."""
    owner = who["owner"]
    good = envelope(owner, payload)
    if kind == "none":
        return {"payload": good["payload"]}
    if kind == "wrong signature":  # the stranger signs, the owner is named
        return {**good, "signature": who["stranger"].sign(good["payload"])}
    if kind == "another payload's signature":
        other = envelope(owner, {**payload, "type": "getClientInfo", "clientId": "1" * 64})
        return {**good, "signature": other["signature"]}
    if kind == "signature of the payload before a change":
        return {**good, "payload": {**good["payload"], "zone": "zB"}}
    if kind == "expired timestamp":
        return envelope(owner, payload, timestamp=int((time.time() - WINDOW - 30) * 1000))
    if kind == "future timestamp":
        return envelope(owner, payload, timestamp=int((time.time() + WINDOW + 30) * 1000))
    if kind == "another zone":  # a valid signer of zone zB asks zone default
        return envelope(who["other_zone"], payload)
    raise AssertionError(kind)


BAD_KINDS = ["none", "wrong signature", "another payload's signature",
             "signature of the payload before a change", "expired timestamp",
             "future timestamp"]


async def test_every_request_type_with_every_credential(
        gw: tuple[Client, dict[str, ClientKeys]]) -> None:
    client, who = gw
    got: dict[tuple[str, str], bool] = {}
    want: dict[tuple[str, str], bool] = {}
    for kind, (payload, passers) in call_types().items():
        body = {"type": kind, **payload}
        for bad in BAD_KINDS:
            status, answer = await post(client, forged(who, bad, body))
            assert status in (400, 401), (kind, bad, status, answer)
            assert answer["error"] in REFUSALS, (kind, bad, answer)
            got[kind, bad], want[kind, bad] = True, True
        for signer, keys_ in who.items():
            status, answer = await post(client, envelope(keys_, body))
            assert status < 500, (kind, signer, status, answer)
            refused = status in (401, 403) and answer.get("error") in REFUSALS
            got[kind, signer], want[kind, signer] = refused, signer not in passers
            if kind == "announceResource" and not refused:  # the next signer's is its own
                await post(client, envelope(keys_, {"type": "withdrawResource",
                                                    "resourceUrl": RESOURCE}))
        status, answer = await post(client, envelope(who["other_zone"], body, zone="zB"))
        got[kind, "zB's own client in zB"] = status in (401, 403)
        want[kind, "zB's own client in zB"] = kind == "deleteFile"  # not an admin
        status, answer = await post(client, envelope(who["owner"], body, zone="zB"))
        got[kind, "owner in zB"] = status in (401, 403)
        want[kind, "owner in zB"] = kind != "getClientInfo"
    assert got == want


async def test_replayed_envelope(gw: tuple[Client, dict[str, ClientKeys]]) -> None:
    """Inside the window a replay is the same idempotent call; after it, a 401."""
    client, who = gw
    stamp = int((time.time() - WINDOW + 2.5) * 1000)
    body = envelope(who["reader"], {"type": "findFile", "hashAlg": "sha1", "hash": SHA},
                    timestamp=stamp)
    for _ in range(2):
        status, answer = await post(client, body)
        assert status == 200 and answer["found"], answer
    await asyncio.sleep(3.5)
    status, answer = await post(client, body)
    assert (status, answer["error"]) == (401, "timestamp_out_of_window"), answer


async def signed_urls(client: Client, who: dict[str, ClientKeys]) -> tuple[str, str]:
    _, found = await post(client, envelope(who["reader"], {"type": "findFile", "hashAlg": "sha1",
                                                           "hash": SHA}))
    _, init = await post(client, envelope(who["owner"], {"type": "initiateFileUpload",
                                                         "hashAlg": "sha1", "hash": NEW,
                                                         "size": 5}))
    return str(found["url"]), str(init["signedUploadUrl"])


def swap(url: str, name: str, value: str) -> str:
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if value:
        query[name] = value
    else:
        query.pop(name, None)
    return urlunsplit(parts._replace(query=urlencode(query)))


async def test_signed_object_urls(gw: tuple[Client, dict[str, ClientKeys]]) -> None:
    client, who = gw
    get_url, put_url = await signed_urls(client, who)
    path = get_url.split("/files/", 1)[1]
    signer = client.app[ZONES_KEY]["default"].storage.signer  # type: ignore[index]
    key = path.split("?")[0].split("/", 1)[1]
    sig = dict(p.split("=") for p in get_url.split("?")[1].split("&"))["signature"]
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    base = get_url.split("/files/")[0]
    cases: list[tuple[str, str, str, int, str]] = [  # what, method, URL, status, code
        ("right GET", "GET", get_url, 200, ""),
        ("right HEAD", "HEAD", get_url, 200, ""),
        ("no credential", "GET", get_url.split("?")[0], 403, "invalid_url_signature"),
        ("wrong signature", "GET", swap(get_url, "signature", flipped), 403,
         "invalid_url_signature"),
        ("another zone's path", "GET", get_url.replace("/files/default/", "/files/zB/"), 403,
         "invalid_url_signature"),
        ("another key's signature", "GET",
         swap(signer.url(base, "GET", "default", key.replace(SHA, NEW), 60), "signature", sig),
         403, "invalid_url_signature"),
        ("expiry moved", "GET", swap(get_url, "expires", str(int(time.time()) + 99999)), 403,
         "invalid_url_signature"),
        ("expired", "GET", signer.url(base, "GET", "default", key, -5), 403, "url_expired"),
        ("GET URL used for PUT", "PUT", get_url, 403, "invalid_url_signature"),
        ("PUT URL used for GET", "GET", put_url, 403, "invalid_url_signature"),
        ("maxSize raised", "PUT", swap(put_url, "maxSize", "999999"), 403,
         "invalid_url_signature"),
        ("maxSize removed", "PUT", swap(put_url, "maxSize", ""), 403, "invalid_url_signature"),
        ("signed PUT onto a content key", "PUT",
         signer.url(base, "PUT", "default", key, 60, 5), 403, "invalid_url_signature"),
        ("expired PUT", "PUT", signer.url(base, "PUT", "default",
                                          put_url.split("/files/default/")[1].split("?")[0],
                                          -5, 5), 403, "url_expired"),
        ("right PUT", "PUT", put_url, 200, ""),
        ("replayed PUT (a retry, same staging key)", "PUT", put_url, 200, ""),
    ]
    got, want = {}, {}
    for what, method, url, status, code in cases:
        r = await client.session.request(method, url, data=b"12345" if method == "PUT" else None)
        body = await r.read()
        answer_code = ""
        if r.status >= 400 and method != "HEAD":
            answer_code = (await r.json())["error"]
        got[what], want[what] = (r.status, answer_code), (status, code)
        if what == "right GET":
            assert body == DATA
    assert got == want
    # no PUT above changed the stored object
    r = await client.session.get(get_url)
    assert await r.read() == DATA


async def test_registration_and_public_routes(gw: tuple[Client, dict[str, ClientKeys]]) -> None:
    client, who = gw
    newcomer, stranger = ClientKeys.generate(), who["stranger"]
    right = newcomer.sign({"type": "addClient"})
    cid = newcomer.client_id
    cases = [
        ("no signature", f"/registerClient/{cid}", 401),
        ("another client's signature", f"/registerClient/{cid}?signature="
         + stranger.sign({"type": "addClient"}), 401),
        ("signature of another payload", f"/registerClient/{cid}?signature="
         + newcomer.sign({"type": "findFile"}), 401),
        ("unknown zone", f"/registerClient/{cid}?zone=nope&signature={right}", 404),
        ("right", f"/registerClient/{cid}?signature={right}", 200),
        ("replayed", f"/registerClient/{cid}?signature={right}", 200),
    ]
    got = {}
    for what, url, _ in cases:
        r = await client.get(url)
        got[what] = r.status
    assert got == {what: status for what, _, status in cases}
    # a registration request is pending: it gives no rights until an admin approves it
    r = await client.get(f"/client/{cid}")
    assert (await r.json())["status"] == "pending"
    status, answer = await post(client, envelope(newcomer, {"type": "initiateFileUpload",
                                                            "hashAlg": "sha1", "hash": NEW,
                                                            "size": 5}))
    assert (status, answer["error"]) == (403, "client_not_registered")
    # public routes show no secret: not the URL secret, not a signature
    secret_file = next(Path(client.app[ZONES_KEY]["default"].storage.root)  # type: ignore[index]
                       .rglob(".kachery-gateway-secret*"))
    url_secret = secret_file.read_text().strip()
    for path in ("/api/info", "/healthz", f"/client/{who['owner'].client_id}",
                 "/openapi.json", "/metrics"):
        r = await client.get(path)
        text = await r.text()
        assert r.status in (200, 404) and url_secret not in text, path


# every route of the gateway and the test above that covers it; a new route or call type
# fails here until the matrix tries it
ROUTES = {
    ("POST", "/api/gateway"): "test_every_request_type_with_every_credential",
    ("POST", "/api/findFile"): "test_gateway_v2_matrix",
    ("POST", "/api/initiateFileUpload"): "test_gateway_v2_matrix",
    ("POST", "/api/finalizeFileUpload"): "test_gateway_v2_matrix",
    ("GET", "/files/{zone}/{key}"): "test_signed_object_urls",
    ("HEAD", "/files/{zone}/{key}"): "test_signed_object_urls",
    ("PUT", "/files/{zone}/{key}"): "test_signed_object_urls",
    ("GET", "/registerClient/{client_id}"): "test_registration_and_public_routes",
    ("HEAD", "/registerClient/{client_id}"): "test_registration_and_public_routes",
    ("GET", "/client/{client_id}"): "public",
    ("HEAD", "/client/{client_id}"): "public",
    ("GET", "/api/info"): "public",
    ("HEAD", "/api/info"): "public",
    ("GET", "/healthz"): "public",
    ("HEAD", "/healthz"): "public",
    ("GET", "/metrics"): "public",
    ("HEAD", "/metrics"): "public",
    ("GET", "/openapi.json"): "public",
    ("HEAD", "/openapi.json"): "public",
}


async def test_the_matrix_covers_every_route_and_call_type(
        gw: tuple[Client, dict[str, ClientKeys]]) -> None:
    client, _ = gw
    routes = {(r.method, r.resource.canonical) for r in client.app.router.routes()  # type: ignore[union-attr]
              if r.resource is not None}
    assert routes == set(ROUTES)
    info = await (await client.get("/api/info")).json()
    assert set(info["requestTypes"]) == set(call_types())
