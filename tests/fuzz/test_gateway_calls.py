"""Property-based fuzzing of every gateway call type past the signature check.

kachery-cloud's five calls, the five multipart extensions and the announcements of
resources, each field drawn from valid values, near misses and wrong types (a quarter of
the cases from valid values only, so every handler is reached), signed by an approved uploader and admin
with a fresh timestamp (so the generated values reach the handlers), sent to an
in-process gateway over a local directory. Properties: every answer is 200 with the
call's ``type`` or the one error shape with a 4xx (or a documented 502/503); the
stored file is never changed; afterwards an upload and a download still work and the
log has no traceback. ``KACHERY_FUZZ_SCALE`` raises the count.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from kachery_resource.gateway import keys
from kachery_resource.gateway.announcements import PAYLOAD_TYPES as ANNOUNCEMENT_TYPES
from kachery_resource.gateway.app import build_app
from kachery_resource.gateway.chunks import PAYLOAD_TYPES as CHUNK_TYPES
from kachery_resource.gateway.envelope import PAYLOAD_TYPES
from kachery_resource.gateway.multipart import PAYLOAD_TYPES as MULTIPART_TYPES
from kachery_resource.gateway.settings import load_settings
from kachery_resource.identity import ClientKeys

from ..gateway.conftest import envelope
from ..gateway.helpers import register, upload
from .harness import budget

pytestmark = pytest.mark.timeout(300)

Client = TestClient[Any, Any]
DATA = b"stored by the fuzz test\n"
SHA = hashlib.sha1(DATA).hexdigest()
EMPTY = hashlib.sha1(b"").hexdigest()
TYPES = {**PAYLOAD_TYPES, **MULTIPART_TYPES, **ANNOUNCEMENT_TYPES, **CHUNK_TYPES}
MIB4 = 4 * 1024**2
RESOURCE = "http://127.0.0.1:9/r/fuzz"  # nothing listens: an on-demand ask fails fast
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-2**65, 2**65), st.floats(allow_nan=False, allow_infinity=False),
                 st.text(max_size=20), st.lists(st.integers(), max_size=3), st.just({}))


def one_of(*valid: Any) -> st.SearchStrategy[Any]:
    return st.integers(0, 4).flatmap(lambda k: st.sampled_from(valid) if k else JUNK)


HASHES = one_of(SHA, EMPTY, "f" * 40, "F" * 40, "a" * 39, "")
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "hash": HASHES, "clientId": one_of("0" * 64, "z" * 64),
    "hashAlg": one_of("sha1", "md5"),
    "size": one_of(0, 1, 5, len(DATA), 10 * 1024**2, 2**62, -1),
    "partSize": one_of(1, 5 * 1024**2, 2**40, 0),
    "acceptsUploadHeaders": one_of(True, False),
    "objectKey": st.one_of(
        st.tuples(st.sampled_from([SHA, EMPTY, "f" * 40, "F" * 40, "a" * 39]),
                  st.sampled_from(["staging", "multipart"])).map(
            lambda t: keys.staging_key("", t[0], keys.new_upload_id()).replace(
                "staging", t[1], 1)),
        one_of(keys.content_key("", SHA), "../etc/passwd", "staging/x/y", "/abs", "a" * 1001)),
    "partNumbers": st.one_of(st.lists(st.integers(-1, 10002), max_size=4), JUNK),
    "zone": one_of("default", "nope", "../x"),
    "onDemand": one_of(False, True),
    "resourceUrl": one_of(RESOURCE, RESOURCE + "/", "http://127.0.0.1:9/x", "ftp://h/r/a",
                          "http://127.0.0.1:9/r/" + "n" * 300),
    "chunkSize": one_of(MIB4, 1, 0, -1, 2**60, 3 * MIB4),
    "listSha1": HASHES,
    "listSize": one_of(1, 500, 0, -1, 10**9),
    "indices": st.one_of(st.lists(st.integers(-1, 70000), max_size=70), JUNK),
    "index": one_of(0, 1, -1, 65536, 2**40),
    "includePending": one_of(True, False),
}
# values that pass validation (a quarter of the cases draw only these, so every type's
# handler is reached whatever the other strategies draw)
VALID: dict[str, st.SearchStrategy[Any]] = {
    "hash": st.sampled_from([SHA, EMPTY, "f" * 40]), "clientId": st.just("0" * 64),
    "hashAlg": st.just("sha1"), "size": st.sampled_from([1, 5, len(DATA)]),
    "partSize": st.sampled_from([1, 5]), "acceptsUploadHeaders": st.booleans(),
    "objectKey": st.sampled_from([SHA, "f" * 40]).map(
        lambda h: keys.staging_key("", h, keys.new_upload_id())),
    "partNumbers": st.lists(st.integers(1, 3), min_size=1, max_size=3),
    "zone": st.just("default"), "onDemand": st.booleans(), "resourceUrl": st.just(RESOURCE),
    "chunkSize": st.just(MIB4), "listSha1": st.sampled_from([SHA, "f" * 40]),
    "listSize": st.sampled_from([100, 500]), "indices": st.lists(st.integers(0, 2), min_size=1,
                                                                  max_size=3),
    "index": st.integers(0, 2), "includePending": st.booleans(),
}


MISSING = object()


def maybe_missing(values: st.SearchStrategy[Any], one_in: int) -> st.SearchStrategy[Any]:
    return st.integers(0, one_in - 1).flatmap(lambda k: values if k else st.just(MISSING))


def payload_of(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """Every field of the type (each left out now and then) and, rarely, an extra one."""
    names = [n for n in TYPES[kind].model_fields if n not in ("type", "timestamp")]
    fields = {n: maybe_missing(FIELDS.get(n, JUNK), 12) for n in names}
    fields["extra"] = st.integers(0, 7).flatmap(lambda k: st.just(MISSING) if k else JUNK)
    return st.fixed_dictionaries({"type": st.just(kind), **fields}).map(
        lambda p: {k: v for k, v in p.items() if v is not MISSING})


def valid_payload_of(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    names = [n for n in TYPES[kind].model_fields if n not in ("type", "timestamp")]
    return st.fixed_dictionaries({"type": st.just(kind), **{n: VALID[n] for n in names}})


def cases_of(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.integers(0, 3).flatmap(
        lambda k: valid_payload_of(kind) if k == 0 else payload_of(kind))


@pytest.fixture
async def gw(tmp_path: Path, aiohttp_client: Any) -> tuple[Client, ClientKeys, Path]:
    root = tmp_path / "storage"
    settings = load_settings(storage=str(root), overrides={
        "multipartMinPartSize": 4, "maxUploadSize": 10 * 1024**2})
    client = await aiohttp_client(build_app(settings))
    signer = ClientKeys.generate()
    await register(client, signer, admin=True)
    await upload(client, signer, DATA)
    return client, signer, root


async def test_every_call_type(gw: tuple[Client, ClientKeys, Path],
                               caplog: pytest.LogCaptureFixture) -> None:
    client, signer, _ = gw
    info = await (await client.get("/api/info")).json()
    assert set(info["requestTypes"]) == set(TYPES)  # a new call type is fuzzed too
    loop = asyncio.get_running_loop()
    seen: dict[tuple[str, int], int] = {}
    bad: list[str] = []

    async def send(payload: dict[str, Any]) -> None:
        stamped = {**payload, "timestamp": int(time.time() * 1000)}
        if payload.get("type") == "deleteFile" and payload.get("hash") == SHA:
            stamped["hash"] = "f" * 40  # the one stored file stays
        body = {"payload": stamped, "fromClientId": signer.client_id,
                "signature": signer.sign(stamped)}
        r = await client.post("/api/gateway", json=body)
        answer = await r.json()
        key = (str(payload["type"]), r.status)
        seen[key] = seen.get(key, 0) + 1
        ok = (answer.get("type") == payload["type"]) if r.status == 200 else (
            set(answer) == {"error", "message", "status"} and answer["status"] == r.status
            and (400 <= r.status < 500 or (r.status, answer["error"]) in (
                (502, "storage_unavailable"), (503, "storage_busy"))))
        if not ok:
            bad.append(f"{r.status} {answer} for {stamped}")

    each = -(-budget(1000) // len(TYPES))  # every type its share, however many there are

    def fuzz(kind: str) -> None:
        @settings(max_examples=each, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        @given(payload=cases_of(kind))
        def one(payload: dict[str, Any]) -> None:
            asyncio.run_coroutine_threadsafe(send(payload), loop).result(30)
        one()

    with caplog.at_level(logging.ERROR):
        for kind in sorted(TYPES):
            await asyncio.to_thread(fuzz, kind)
    assert bad == [], bad[:5]
    assert sum(seen.values()) >= budget(1000) * 0.9
    # every type's handler answered 200 at least once (but the calls on a multipart upload:
    # their made-up object keys belong to none)
    # (nor chunk calls that need a list or a chunk uploaded first)
    assert {kind for kind, status in seen if status == 200} >= set(TYPES) - (
        set(MULTIPART_TYPES) - {"initiateMultipartUpload"}) - (
        set(CHUNK_TYPES) - {"initiateChunkList", "findChunks"}), seen
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # the stored file is intact and served; a new upload still goes through
    status, found = 0, {}
    r = await client.post("/api/gateway", json=envelope(
        signer, {"type": "findFile", "hashAlg": "sha1", "hash": SHA}))
    status, found = r.status, await r.json()
    assert status == 200 and found["found"], found
    assert await (await client.session.get(found["url"])).read() == DATA
    status, done = await upload(client, signer, b"after the fuzz\n")
    assert status == 200, done
