"""The daemon's multipart uploader against an in-process gateway (local directory, and
SeaweedFS), with a fault-injecting relay in front of where the part bytes go."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kachery_resource.daemon.uploads.gateway import DaemonGateway
from kachery_resource.daemon.uploads.journal import JournalEntry, UploadJournal
from kachery_resource.daemon.uploads.multipart import (
    MultipartPlan,
    MultipartSettings,
    choose_part_size,
)
from kachery_resource.daemon.uploads.multipart_api import MultipartLimits
from kachery_resource.daemon.uploads.uploader import GatewayUploader
from kachery_resource.errors import ConfigError, IntegrityError, UploadFailedError
from kachery_resource.gateway.app import build_app
from kachery_resource.gateway.settings import load_settings
from kachery_resource.identity import ClientKeys
from kachery_resource.store import LocalFile

from ..gateway.helpers import Client, register
from ..servers import S3Server
from .fault_relay import FaultRelay

MIB = 1024 * 1024
PART = 5 * MIB


@dataclass
class Stack:
    """An in-process gateway, the relay in front of the part bytes, and a daemon-side client."""

    client: Client
    relay: FaultRelay
    gateway: DaemonGateway
    listing: Callable[[], list[str]]
    journal: UploadJournal

    def uploader(self, **settings: Any) -> MultipartPlan:
        values = {"multipartPartSize": PART, "multipartParallelParts": 3, **settings}
        return MultipartPlan(self.gateway, MultipartSettings.from_mapping(values), self.journal)

    async def fetch(self, sha1: str) -> bytes | None:
        from kachery_resource.identity import signed_envelope

        payload = {"type": "findFile", "hashAlg": "sha1", "hash": sha1, "zone": "default"}
        resp = await self.gateway.session.post(f"{self.gateway.url}/api/gateway",
                                               json=signed_envelope(self.gateway.keys, payload))
        found = await resp.json()
        if not found.get("found"):
            return None
        return await (await self.gateway.session.get(found["url"])).read()


@pytest.fixture(params=["local", "s3"])
async def stack(request: pytest.FixtureRequest, tmp_path: Path, aiohttp_client: Any,
                client_keys: ClientKeys, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    if request.param == "local":
        root = tmp_path / "storage"
        client = await aiohttp_client(build_app(load_settings(storage=str(root))))
        relay = FaultRelay(str(client.make_url("")).rstrip("/")).start()
        gateway_url = relay.url  # part URLs are built from the Host: they point at the relay

        def listing() -> list[str]:
            return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                          if p.is_file() and not p.name.startswith(".kachery-gateway-secret")
                          and "clients" not in p.parts)
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        for name, value in s3.env().items():
            monkeypatch.setenv(name, value)
        relay = FaultRelay(s3.endpoint).start()
        prefix = "dmp" + uuid.uuid4().hex[:10]
        settings = load_settings(storage=f"s3://{s3.bucket}/{prefix}",
                                 overrides={"s3EndpointUrl": relay.url})
        client = await aiohttp_client(build_app(settings))
        relay.reset()  # the gateway's startup probe PUT through it: not the daemon's PUTs
        gateway_url = str(client.make_url("")).rstrip("/")

        def listing() -> list[str]:
            c = s3.client()
            objects = c.list_objects_v2(Bucket=s3.bucket, Prefix=prefix + "/").get("Contents", [])
            uploads = c.list_multipart_uploads(Bucket=s3.bucket, Prefix=prefix + "/").get("Uploads", [])
            return sorted([o["Key"][len(prefix) + 1:] for o in objects if "/clients/" not in o["Key"]]
                          + [f"(upload) {u['Key']}" for u in uploads])
    await register(client, client_keys)
    journal = UploadJournal(tmp_path / "state" / "upload-journal.sqlite")
    async with aiohttp.ClientSession() as session:
        yield Stack(client, relay, DaemonGateway(session, gateway_url, client_keys, "default"),
                    listing, journal)
    journal.close()
    relay.stop()


def make_file(path: Path, size: int) -> LocalFile:
    data = os.urandom(size)
    path.write_bytes(data)
    return LocalFile(hashlib.sha1(data).hexdigest(), path, size, path.stat().st_mtime, False)


class ProgressLog:
    def __init__(self) -> None:
        self.deltas: list[int] = []
        self.total = 0
        self.peak = 0

    def __call__(self, n: int) -> None:
        self.deltas.append(n)
        self.total += n
        self.peak = max(self.peak, self.total)


async def test_upload_with_failing_part_puts(stack: Stack, tmp_path: Path) -> None:
    """Every 5th part PUT fails (503): each part is retried on its own and the file arrives."""
    local = make_file(tmp_path / "big.bin", 7 * PART + 12345)
    stack.relay.fail_every = 5
    up = stack.uploader()
    assert await up.wants(local) is False  # below the default 128 MiB threshold
    up = stack.uploader(multipartThreshold=PART)
    assert await up.wants(local)
    progress = ProgressLog()
    await up.upload(local, progress)
    assert stack.relay.failed >= 1
    assert progress.total == local.size and progress.peak <= local.size + 3 * PART
    assert await stack.fetch(local.sha1) == local.path.read_bytes()
    assert stack.listing() == [f"sha1/{local.sha1[:2]}/{local.sha1[2:4]}/{local.sha1[4:6]}/{local.sha1}"]
    assert stack.journal.entries() == []
    # the same file again: the gateway says it exists, nothing is sent
    before = stack.relay.put_bytes
    await up.upload(local, ProgressLog())
    assert stack.relay.put_bytes == before


async def test_resume_sends_only_missing_parts(stack: Stack, tmp_path: Path) -> None:
    """A journal entry from a 'crash': parts 1 (journaled) and 3 (stored, not journaled yet)."""
    local = make_file(tmp_path / "big.bin", 4 * PART + 999)
    up = stack.uploader()
    answer = await up.api.initiate(local.sha1, local.size, PART)
    entry = stack.journal.start(JournalEntry(
        stack.gateway.url, "default", local.sha1, str(local.path), local.size,
        local.path.stat().st_mtime_ns, answer["objectKey"], PART, answer["numParts"]))
    urls = await up.api.urls(local.sha1, entry.object_key, [1, 3])
    data = local.path.read_bytes()
    for n in (1, 3):
        async with stack.gateway.session.put(urls[n], data=data[(n - 1) * PART:n * PART]) as resp:
            assert resp.status == 200
            if n == 1:
                stack.journal.add_part(entry.object_key, 1, PART, resp.headers["ETag"].strip('"'))
    sent_before = stack.relay.ok_put_bytes
    progress = ProgressLog()
    await up.upload(local, progress)
    assert progress.deltas[0] == 2 * PART  # resumed parts count as uploaded at once
    assert stack.relay.ok_put_bytes - sent_before == local.size - 2 * PART
    assert await stack.fetch(local.sha1) == data
    assert stack.journal.entries() == []


async def test_changed_file_discards_journal_entry(stack: Stack, tmp_path: Path) -> None:
    local = make_file(tmp_path / "big.bin", 2 * PART + 1)
    up = stack.uploader()
    answer = await up.api.initiate(local.sha1, local.size, PART)
    stack.journal.start(JournalEntry(stack.gateway.url, "default", local.sha1, str(local.path),
                                     local.size, 12345, answer["objectKey"], PART, answer["numParts"]))
    await up.upload(local, ProgressLog())
    assert len(stack.listing()) == 1  # the old upload was aborted, the new one completed
    assert await stack.fetch(local.sha1) == local.path.read_bytes()


@pytest.mark.parametrize("hash_locally", [False, True])
async def test_wrong_bytes_abort_and_leave_nothing(stack: Stack, tmp_path: Path, hash_locally: bool) -> None:
    """A file whose bytes no longer hash to its sha1 (same size and mtime): refused by the
    gateway at completion, or caught by the daemon's own pass (``multipartHashLocally``)."""
    local = make_file(tmp_path / "big.bin", 3 * PART)
    data = bytearray(local.path.read_bytes())
    data[-1] ^= 1
    local.path.write_bytes(bytes(data))
    os.utime(local.path, ns=(0, int(local.mtime * 1e9)))
    with pytest.raises(IntegrityError, match="no longer hashes"):
        await stack.uploader(multipartHashLocally=hash_locally).upload(local, ProgressLog())
    assert stack.listing() == []
    assert stack.journal.entries() == []
    assert await stack.fetch(local.sha1) is None


async def test_cancel_aborts_upload(stack: Stack, tmp_path: Path) -> None:
    """The daemon stopping (task cancelled) aborts the upload: no object, no parts, no entry."""
    local = make_file(tmp_path / "big.bin", 6 * PART)
    stack.relay.rate = 8 * MIB
    progress = ProgressLog()
    task = asyncio.create_task(stack.uploader(multipartParallelParts=2).upload(local, progress))
    while progress.total < PART:
        await asyncio.sleep(0.05)
    assert stack.journal.entries() != []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):  # a part PUT cut mid-body is cleaned up by the gateway a moment later
        if stack.listing() == []:
            break
        await asyncio.sleep(0.1)
    assert stack.listing() == []
    assert stack.journal.entries() == []


async def test_stalled_part_is_cut_and_retried(stack: Stack, tmp_path: Path) -> None:
    local = make_file(tmp_path / "big.bin", 3 * PART + 7)
    stack.relay.stall_puts = {2}
    stack.relay.stall_sec = 3
    up = stack.uploader(uploadStallSec=1.0)
    await asyncio.wait_for(up.upload(local, ProgressLog()), 30)
    assert stack.relay.stalled == 1
    assert await stack.fetch(local.sha1) == local.path.read_bytes()


async def test_failure_after_retries_keeps_journal_for_resume(stack: Stack, tmp_path: Path) -> None:
    local = make_file(tmp_path / "big.bin", 3 * PART + 7)
    stack.relay.fail_every = 1
    up = stack.uploader(multipartPartTries=2)
    with pytest.raises(UploadFailedError, match="resume"):
        await up.upload(local, ProgressLog())
    assert [e.sha1 for e in stack.journal.entries()] == [local.sha1]
    stack.relay.fail_every = 0
    await up.upload(local, ProgressLog())
    assert await stack.fetch(local.sha1) == local.path.read_bytes()
    assert stack.journal.entries() == []


async def test_daemon_uploader_picks_multipart_only_when_offered(stack: Stack, tmp_path: Path) -> None:
    """Through the daemon's GatewayUploader: multipart above the threshold when /api/info
    offers it; one single PUT when the gateway does not (like kachery-cloud's)."""
    big = make_file(tmp_path / "big.bin", 3 * PART)
    uploader = GatewayUploader(stack.gateway, stack.uploader(multipartThreshold=PART))
    await uploader.upload(big, ProgressLog())
    assert stack.relay.puts == 3
    assert await stack.fetch(big.sha1) == big.path.read_bytes()

    async def no_multipart() -> dict[str, Any]:
        return {"service": "an older gateway"}

    other = make_file(tmp_path / "other.bin", 3 * PART)
    older = DaemonGateway(stack.gateway.session, stack.gateway.url, stack.gateway.keys, "default")
    older.info = no_multipart  # type: ignore[method-assign]
    plain = MultipartPlan(older, MultipartSettings.from_mapping(
        {"multipartPartSize": PART, "multipartThreshold": PART}), stack.journal)
    uploader = GatewayUploader(older, plain)
    await uploader.upload(other, ProgressLog())
    uploader.close()
    assert stack.relay.puts == 4  # one more PUT: the whole file
    assert await stack.fetch(other.sha1) == other.path.read_bytes()


def test_part_size_choice_and_settings() -> None:
    limits = MultipartLimits(5 * MIB, 5 * 1024 * MIB, 10000, 5 * 1024**4)
    assert choose_part_size(100 * MIB, 64 * MIB, limits) == 64 * MIB
    assert choose_part_size(100 * MIB, 1, limits) == 5 * MIB
    big = 1024**4  # 1 TiB: 64 MiB parts would be 16384 of them
    size = choose_part_size(big, 64 * MIB, limits)
    assert -(-big // size) <= 10000 and size % MIB == 0
    with pytest.raises(UploadFailedError, match="larger than the gateway accepts"):
        choose_part_size(6 * 1024**4, 64 * MIB, limits)
    assert MultipartLimits.from_info({"multipartUpload": {"requestTypes": ["abortMultipartUpload"]}}) is None
    assert MultipartLimits.from_info({}) is None
    assert MultipartSettings.from_mapping({"resourceName": "x"}).part_size == 64 * MIB
    with pytest.raises(ConfigError, match="multipartParallelParts"):
        MultipartSettings.from_mapping({"multipartParallelParts": 0})
    assert MultipartSettings.from_mapping({}).parallel_bodies == 1
    with pytest.raises(ConfigError, match="multipartParallelBodies"):
        MultipartSettings.from_mapping({"multipartParallelBodies": 0})


def test_journal_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j" / "upload-journal.sqlite"
    j = UploadJournal(path)
    e = j.start(JournalEntry("http://g", "default", "a" * 40, "/x", 10, 5, "k", 5, 2))
    j.add_part("k", 1, 5, "etag1")
    j.close()
    j = UploadJournal(path)
    found = j.find("http://g", "default", "a" * 40)
    assert found is not None and found.object_key == "k" and found.created == e.created
    assert j.parts("k")[1].etag == "etag1"
    j.remove(found)
    assert j.entries() == [] and j.parts("k") == {}
    j.close()
