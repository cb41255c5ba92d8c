"""fileRanges on the daemon: validation, clipping, edges, one job per chunk, priority over
whole-file uploads, hashing, the background whole-file upload (real files and chunk lists,
a fake gateway side)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kachery_resource.chunking import MIB, ChunkList, ChunkRecords
from kachery_resource.config import ResourceConfig
from kachery_resource.daemon import ranges as ranges_module
from kachery_resource.daemon.connection import ProxyConnection
from kachery_resource.daemon.jobs import JobManager
from kachery_resource.daemon.ranges import MAX_CHUNKS, RangeJobs
from kachery_resource.daemon.slots import Slots
from kachery_resource.daemon.wire import RangesRequest, read_request
from kachery_resource.errors import FileChangedError, ProtocolError
from kachery_resource.store import LocalFile

from .test_connection import StandInProxy
from .test_jobs import FakeUploader, until

CS = 256 * 1024  # the chunks of a file past one chunk (ONE) and up to 16 GiB
ONE = 4 * MIB
ALL = frozenset({"fileUpload", "fileRanges"})


class FakeChunks:
    """The chunks plan as the jobs see it: records what was sent; holds chunks until told."""

    def __init__(self, offered: bool = True, fail: Exception | None = None) -> None:
        self.is_offered = offered
        self.fail = fail
        self.sent: list[int] = []
        self.release = asyncio.Event()
        self.release.set()

    async def offered(self) -> bool:
        return self.is_offered

    async def upload_chunks(self, local: LocalFile, chunks: ChunkList, indices: Iterable[int],
                            progress: Any, uploaded: Any = None) -> dict[int, bool]:
        wanted = list(indices)
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        for i in wanted:
            chunks.span(i)
            self.sent.append(i)
            progress(chunks.span(i)[1])
            if uploaded is not None:
                uploaded(i)
        return dict.fromkeys(wanted, True)


def make_file(root: Path, size: int) -> LocalFile:
    path = root / f"file{size}"
    with open(path, "wb") as f:
        f.write(os.urandom(min(size, 3 * MIB)))
        f.truncate(size)  # the rest sparse: big files cost no disk
    sha1 = hashlib.sha1(path.read_bytes()).hexdigest()
    return LocalFile(sha1, path, size, path.stat().st_mtime, linked=True)


def setup(tmp_path: Path, files: list[LocalFile], plan: FakeChunks, *, slots: int = 2,
          upload_whole: bool = False) -> tuple[RangeJobs, JobManager, FakeUploader]:
    by_sha1 = {f.sha1: f for f in files}

    async def resolve(sha1: str) -> LocalFile | None:
        return by_sha1.get(sha1)

    uploader = FakeUploader()
    uploader.release.set()
    jobs = JobManager(resolve, uploader, slots)
    ranges = RangeJobs(resolve, ChunkRecords(tmp_path / "store"), plan, jobs,
                       upload_whole=upload_whole)
    return ranges, jobs, uploader


def indices(answer: dict[str, Any]) -> list[int]:
    return [c["index"] for c in answer["chunks"]]


# -- the request on the wire ------------------------------------------------------------
def _msg(request: dict[str, Any]) -> dict[str, Any]:
    return {"type": "requestFromClient", "resourceName": "r", "zone": "z", "requestId": "x",
            "timeoutMsec": 10000, "request": request}


def test_wire_reads_a_ranges_request_and_clamps_its_wait() -> None:
    req = read_request(_msg({"type": "fileRanges", "uri": "sha1://" + "a" * 40,
                             "ranges": [[0, 1], [5, 100]], "timeoutMsec": 60000}), "r", ALL)
    assert req == RangesRequest("sha1://" + "a" * 40, ((0, 1), (5, 100)), 9.0)


@pytest.mark.parametrize("ranges", [
    [], [[0, 1]] * 17, [[-1, 1]], [[0, 0]], [[0.5, 1]], [[True, 1]], [[0]], [[0, 1, 2]],
    "0-1", None, [["0", "1"]], [[1 << 62, 1]],
])
def test_wire_refuses_bad_ranges(ranges: object) -> None:
    with pytest.raises(ProtocolError, match="ranges must be 1 to 16 pairs"):
        read_request(_msg({"type": "fileRanges", "uri": "sha1://" + "a" * 40, "ranges": ranges,
                           "timeoutMsec": 1}), "r", ALL)


def test_wire_refuses_ranges_when_not_answered() -> None:
    with pytest.raises(ProtocolError, match="unsupported request type 'fileRanges'"):
        read_request(_msg({"type": "fileRanges", "uri": "u", "ranges": [[0, 1]],
                           "timeoutMsec": 1}), "r")


# -- edges and clipping -----------------------------------------------------------------
async def test_edges_first_last_across_past_the_end(tmp_path: Path) -> None:
    f = make_file(tmp_path, ONE + 3 * CS + 5)  # 20 chunks
    plan = FakeChunks()
    ranges, jobs, _ = setup(tmp_path, [f], plan)
    cases = [
        ([(0, 1)], [0]),                           # first byte
        ([(f.size - 1, 1)], [19]),                 # last byte (a short last chunk)
        ([(CS - 1, 2)], [0, 1]),                   # across a chunk boundary
        ([(2 * CS, CS)], [2]),                     # exactly one chunk
        ([(ONE + 3 * CS, 10**9)], [19]),           # past the end: clipped
        ([(f.size, 1)], []),                       # starts at the end: nothing
        ([(10**12, 5)], []),                       # far past the end
        ([(0, 1), (f.size - 1, 1), (1, 2)], [0, 19]),  # several, merged
    ]
    for asked, want in cases:
        got = await ranges.answer(f.sha1, asked, 10)
        assert got["status"] == "ready" and got["size"] == f.size and got["chunkSize"] == CS
        assert indices(got) == want, asked
        assert all(c["status"] == "completed" for c in got["chunks"])
    assert sorted(plan.sent) == [0, 1, 2, 19]  # each chunk sent once
    await ranges.close()
    await jobs.close()


async def test_empty_and_one_chunk_files(tmp_path: Path) -> None:
    empty, small = make_file(tmp_path, 0), make_file(tmp_path, 1000)
    plan = FakeChunks()
    ranges, jobs, _ = setup(tmp_path, [empty, small], plan)
    got = await ranges.answer(empty.sha1, [(0, 1)], 5)
    assert got == {"type": "fileRanges", "status": "ready", "size": 0, "chunkSize": ONE,
                   "chunks": []}
    got = await ranges.answer(small.sha1, [(999, 100)], 5)
    assert indices(got) == [0] and got["chunks"][0]["status"] == "completed"
    await ranges.close()
    await jobs.close()


async def test_at_most_64_chunks_per_request(tmp_path: Path) -> None:
    f = make_file(tmp_path, 100 * CS)
    records = ChunkRecords(tmp_path / "store")
    records.put(ChunkList(f.sha1, f.size, CS, "0" * 40 * 100))  # as if hashed at link time
    ranges, jobs, _ = setup(tmp_path, [f], FakeChunks())
    got = await ranges.answer(f.sha1, [(0, f.size)], 10)
    assert indices(got) == list(range(MAX_CHUNKS))
    got = await ranges.answer(f.sha1, [(MAX_CHUNKS * CS, f.size)], 10)
    assert indices(got) == list(range(MAX_CHUNKS, 100))
    await ranges.close()
    await jobs.close()


# -- jobs -------------------------------------------------------------------------------
async def test_one_job_per_chunk_however_many_readers(tmp_path: Path) -> None:
    f = make_file(tmp_path, ONE + 2 * CS + 1)
    plan = FakeChunks()
    plan.release.clear()
    ranges, jobs, _ = setup(tmp_path, [f], plan)
    ChunkRecords(tmp_path / "store").hash_file(f.path)  # as `link` does
    early = await ranges.answer(f.sha1, [(0, 1)], 0)  # no wait: the states now
    assert early["chunks"] == [{"index": 0, "status": "queued"}]
    await until(lambda: ranges.chunk_uploads == 1)
    again = await ranges.answer(f.sha1, [(0, 1)], 0)
    assert again["chunks"] == [{"index": 0, "status": "running", "bytesUploaded": 0}]
    readers = [asyncio.create_task(ranges.answer(f.sha1, [(0, CS + 1)], 10)) for _ in range(20)]
    await until(lambda: ranges.chunk_job(f.sha1, 1) is not None)
    plan.release.set()
    answers = await asyncio.gather(*readers)
    assert all(indices(a) == [0, 1] for a in answers)
    assert sorted(plan.sent) == [0, 1] and ranges.chunk_uploads == 2
    await ranges.close()
    await jobs.close()


async def test_statuses_unavailable_not_found_hashing_error(tmp_path: Path) -> None:
    f = make_file(tmp_path, ONE + 2 * CS + 1)
    ranges, jobs, _ = setup(tmp_path, [f], FakeChunks(offered=False))
    assert (await ranges.answer(f.sha1, [(0, 1)], 1))["status"] == "unavailable"

    ranges, jobs, _ = setup(tmp_path, [f], FakeChunks())
    assert (await ranges.answer("f" * 40, [(0, 1)], 1))["status"] == "not-found"
    # no recorded list (linked before chunks existed): hashing, then ready
    assert (await ranges.answer(f.sha1, [(0, 1)], 0))["status"] == "hashing"
    await until(lambda: ChunkRecords(tmp_path / "store").get(f.sha1, f.size) is not None)
    assert (await ranges.answer(f.sha1, [(0, 1)], 5))["status"] == "ready"

    changed = FileChangedError(f"{f.path} changed since it was hashed; link it again")
    ranges, jobs, _ = setup(tmp_path, [f], FakeChunks(fail=changed))
    got = await ranges.answer(f.sha1, [(CS, 1)], 5)
    chunk = got["chunks"][0]
    assert chunk["status"] == "error" and "changed" in chunk["error"]
    assert str(tmp_path) not in chunk["error"] and f.path.name in chunk["error"]
    assert ChunkRecords(tmp_path / "store").get(f.sha1, f.size) is None  # the list dropped
    await ranges.close()
    await jobs.close()


async def test_a_file_that_no_longer_hashes_to_its_sha1_is_an_error(tmp_path: Path) -> None:
    f = make_file(tmp_path, ONE + 2 * CS + 1)
    stale = LocalFile("e" * 40, f.path, f.size, f.mtime, linked=True)
    ranges, jobs, _ = setup(tmp_path, [stale], FakeChunks())
    got = await ranges.answer(stale.sha1, [(0, 1)], 10)
    assert got["status"] == "error" and "file changed" in got["error"]
    assert str(tmp_path) not in got["error"]
    await ranges.close()
    await jobs.close()


async def test_slots_serve_urgent_waiters_first() -> None:
    slots = Slots(1)
    order: list[str] = []

    async def take(name: str, urgent: bool) -> None:
        async with slots.hold(urgent):
            order.append(name)
            await asyncio.sleep(0.01)

    async with slots.hold():
        tasks = [asyncio.create_task(take("whole1", False)),
                 asyncio.create_task(take("whole2", False))]
        await asyncio.sleep(0.01)
        tasks += [asyncio.create_task(take("chunk1", True)),
                  asyncio.create_task(take("chunk2", True))]
        await asyncio.sleep(0.01)
        assert slots.urgent_waiting == 2
    await asyncio.gather(*tasks)
    assert order == ["chunk1", "chunk2", "whole1", "whole2"]
    cancelled = asyncio.create_task(take("gone", True))
    async with slots.hold():
        await asyncio.sleep(0.01)
        cancelled.cancel()
    assert not slots.locked()


async def test_whole_file_follows_the_first_ranges_only_when_set(tmp_path: Path) -> None:
    f = make_file(tmp_path, ONE + 2 * CS + 1)
    ranges, jobs, uploader = setup(tmp_path, [f], FakeChunks(), upload_whole=True)
    await ranges.answer(f.sha1, [(0, 1)], 5)
    await until(lambda: uploader.started == [f.sha1])
    job = jobs.job(f.sha1)
    assert job is not None
    await job.done.wait()
    await ranges.answer(f.sha1, [(CS, 1)], 5)  # not a first request: no second upload
    await asyncio.sleep(0.05)
    assert uploader.started == [f.sha1]
    await ranges.close()
    await jobs.close()

    ranges, jobs, uploader = setup(tmp_path, [f], FakeChunks(), upload_whole=False)
    await ranges.answer(f.sha1, [(0, 1)], 5)
    await asyncio.sleep(0.05)
    assert uploader.started == []
    await ranges.close()
    await jobs.close()



async def test_whole_file_waits_until_the_reader_pauses(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole-file upload started during a read took the CPUs and the gateway from the
    reader's chunks (the first read 2.5 times slower): it waits for a pause."""
    monkeypatch.setattr(ranges_module, "WHOLE_AFTER_QUIET_SEC", 0.3)
    f = make_file(tmp_path, ONE + 4 * CS + 1)
    ranges, jobs, uploader = setup(tmp_path, [f], FakeChunks(), upload_whole=True)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in range(5):  # a reader: a request every 0.1 s for 0.5 s
        await ranges.answer(f.sha1, [(i * CS, 1)], 5)
        await asyncio.sleep(0.1)
    assert uploader.started == []  # still reading
    last = loop.time()
    await until(lambda: uploader.started == [f.sha1])
    assert loop.time() - last >= 0.2 and loop.time() - t0 >= 0.7
    await ranges.close()
    await jobs.close()

# -- through the daemon's proxy connection ----------------------------------------------
async def test_connection_declares_and_answers_ranges(tmp_path: Path) -> None:
    f = make_file(tmp_path, ONE + CS + 10)
    ranges, jobs, _ = setup(tmp_path, [f], FakeChunks())
    proxy = StandInProxy([1, 2])
    app = web.Application()
    app.router.add_get("/api/info", proxy.info)
    app.router.add_get("/", proxy.ws)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    config = ResourceConfig(resourceName="res1", proxyUrl=str(server.make_url("")).rstrip("/"),
                            proxySecret="sec", kacheryZone="z1")
    async with aiohttp.ClientSession() as session:
        conn = ProxyConnection(config, jobs, session, ranges=ranges)
        task = asyncio.create_task(conn.run_forever())
        try:
            await until(lambda: bool(proxy.sockets) and conn.connected.is_set())
            assert proxy.initialized[0]["requestTypes"] == ["fileRanges", "fileUpload"]
            ask = {"type": "requestFromClient", "resourceName": "res1", "zone": "z1",
                   "timeoutMsec": 10000, "requestId": "r1",
                   "request": {"type": "fileRanges", "uri": f"sha1://{f.sha1}",
                               "ranges": [[CS - 1, 2]], "timeoutMsec": 5000}}
            await proxy.send(ask)
            await proxy.send({**ask, "requestId": "r2",
                              "request": {**ask["request"], "ranges": [[-1, 2]]}})
            got = {}
            for _ in range(2):
                r = await asyncio.wait_for(proxy.responses.get(), 10)
                got[r["requestId"]] = r
            answer = got["r1"]["response"]
            assert answer["type"] == "fileRanges" and answer["status"] == "ready"
            assert indices(answer) == [0, 1] and answer["size"] == ONE + CS + 10
            assert got["r2"]["response"] == {} and "ranges must be" in got["r2"]["error"]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await ranges.close()
            await jobs.close()
    await server.close()


class SilentChunks(FakeChunks):
    """A plan that uploads but never reports chunk by chunk."""

    async def upload_chunks(self, local: LocalFile, chunks: ChunkList, indices: Iterable[int],
                            progress: Any, uploaded: Any = None) -> dict[int, bool]:
        return await super().upload_chunks(local, chunks, indices, progress)


async def test_chunks_are_completed_when_the_plan_returns(tmp_path: Path) -> None:
    f = make_file(tmp_path, ONE + 2 * CS + 1)
    ranges, jobs, _ = setup(tmp_path, [f], SilentChunks())
    got = await ranges.answer(f.sha1, [(0, 3 * CS)], 5)
    assert [c["status"] for c in got["chunks"]] == ["completed"] * 3
    await ranges.close()
    await jobs.close()
