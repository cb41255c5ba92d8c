"""The reader's side of chunks: bytes at every edge, the list's and each chunk's checks,
falling back to the whole file (a stand-in for proxy, daemon and gateway: chunkfake.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import kachery_resource
from kachery_resource.chunking import MIB, chunk_size_for
from kachery_resource.client import ClientSettings
from kachery_resource.identity import ClientKeys
from kachery_resource.reader import list_check, offers
from kachery_resource.reader.chunk_source import ChunkSource

from .chunkfake import ChunkFake
from .conftest import blob

CS = 256 * 1024
SIZE = 10 * MIB + 1000  # past one chunk: 41 chunks of 256 KiB
assert chunk_size_for(SIZE) == CS


@pytest.fixture
def fake() -> Iterator[ChunkFake]:
    offers._NO_RANGES.clear()
    list_check._SIGNERS.clear()
    f = ChunkFake(blob(SIZE, seed=5))
    server = f.start()
    yield f
    server.shutdown()


def settings(fake: ChunkFake, tmp_path: Path) -> ClientSettings:
    return ClientSettings(store_dir=tmp_path / "kc", gateway_url=fake.url, zone="default",
                          resource_url=f"{fake.url}/r/res", keys=ClientKeys.generate())


def source_of(f: kachery_resource.RemoteFile) -> object:
    return f._fetcher.source  # type: ignore[attr-defined]


def test_edges_and_a_whole_read_through_chunks(fake: ChunkFake, tmp_path: Path) -> None:
    data = fake.data
    with kachery_resource.open(f"sha1://{fake.sha1}", settings=settings(fake, tmp_path)) as f:
        assert isinstance(source_of(f), ChunkSource)
        for offset, length in [(0, 1), (SIZE - 1, 1), (CS - 3, 6), (2 * CS - 1, 1001),
                               (SIZE - 10, 100)]:
            f.seek(offset)
            assert f.read(length) == data[offset:offset + length]
        f.seek(SIZE)
        assert f.read(10) == b""
        f.seek(0)
        assert f.read() == data and f.verified is True  # the whole sha1, checked
    assert {r["type"] for r in fake.asked} == {"fileRanges"}
    assert not fake.whole


def test_a_forged_list_is_refused_and_the_file_read_whole(fake: ChunkFake, tmp_path: Path) -> None:
    doc = json.loads(fake.document())
    doc["payload"]["chunkSha1"] = "0" * len(doc["payload"]["chunkSha1"])  # signature breaks
    fake.list_doc = json.dumps(doc).encode()
    with kachery_resource.open(f"sha1://{fake.sha1}", settings=settings(fake, tmp_path)) as f:
        assert f.read(100) == fake.data[:100]
        src = source_of(f)
        assert isinstance(src, ChunkSource) and "signature does not verify" in str(src.list_refused)
    assert fake.chunk_gets == []  # no chunk was fetched under the forged list
    assert "fileUpload" in [r["type"] for r in fake.asked]  # the whole-file path


def test_a_list_signed_by_an_unregistered_client_is_refused(fake: ChunkFake, tmp_path: Path) -> None:
    fake.registered = False
    with kachery_resource.open(f"sha1://{fake.sha1}", settings=settings(fake, tmp_path)) as f:
        assert f.read(10) == fake.data[:10]
        src = source_of(f)
        assert isinstance(src, ChunkSource) and "not a registered client" in str(src.list_refused)
    assert fake.chunk_gets == []


def test_a_tampered_chunk_is_fetched_again_then_refused(fake: ChunkFake, tmp_path: Path) -> None:
    fake.tampered = {0: 1}  # bad once: the fresh fetch is good
    with kachery_resource.open(f"sha1://{fake.sha1}", settings=settings(fake, tmp_path)) as f:
        assert f.read(10) == fake.data[:10]
        src = source_of(f)
        assert isinstance(src, ChunkSource) and src.refetched == 1
        fake.tampered = {1: 2}  # bad twice: refused, nothing of it used
        f.seek(CS)
        with pytest.raises(kachery_resource.IntegrityError, match=r"chunk 1 .* twice"):
            f.read(10)
    assert fake.chunk_gets.count(1) == 2


def test_an_older_peer_means_the_whole_file_remembered(fake: ChunkFake, tmp_path: Path) -> None:
    fake.ranges_status = "unsupported"
    uri = f"sha1://{fake.sha1}"
    with kachery_resource.open(uri, settings=settings(fake, tmp_path)) as f:
        assert f.read(10) == fake.data[:10]
    assert [r["type"] for r in fake.asked] == ["fileRanges", "fileUpload"]
    fake.whole, fake.asked = False, []
    with kachery_resource.open(uri, settings=settings(fake, tmp_path)) as f:
        assert f.read(10) == fake.data[:10]
    assert [r["type"] for r in fake.asked] == ["fileUpload"]  # remembered: no fileRanges


@pytest.mark.parametrize("why", ["unavailable", "proxy"])
def test_unavailable_or_an_old_proxy_reads_the_whole_file(fake: ChunkFake, tmp_path: Path,
                                                          why: str) -> None:
    if why == "unavailable":
        fake.ranges_status = "unavailable"
    else:
        fake.request_types = ["fileUpload"]
    with kachery_resource.open(f"sha1://{fake.sha1}", settings=settings(fake, tmp_path)) as f:
        assert f.read() == fake.data and f.verified is True
    assert fake.whole and fake.chunk_gets == []


def test_whole_file_answer_moves_to_the_bucket(fake: ChunkFake, tmp_path: Path) -> None:
    with kachery_resource.open(f"sha1://{fake.sha1}", settings=settings(fake, tmp_path)) as f:
        assert f.read(10) == fake.data[:10]
        fake.whole = True  # the daemon's background upload finished
        f.seek(2 * CS)
        assert f.read(100) == fake.data[2 * CS:2 * CS + 100]
    assert fake.chunk_gets == [0]


def test_an_expired_chunk_url_is_refreshed(fake: ChunkFake, tmp_path: Path) -> None:
    fake.expired = 1
    with kachery_resource.open(f"sha1://{fake.sha1}", settings=settings(fake, tmp_path)) as f:
        assert f.read(10) == fake.data[:10]
    assert fake.chunk_gets == [0, 0]
    assert fake.finds == 3  # open's probe, the first URL, a fresh one after the 403


def test_a_read_of_many_chunks_asks_once_and_small_reads_fetch_only_their_chunk(
        fake: ChunkFake, tmp_path: Path) -> None:
    """A read over 8 chunks is two fileRanges and two findChunks at once; scattered small reads
    (HDF5 metadata) read nothing ahead; the chunk the first request already had uploaded
    is not asked for again."""
    with kachery_resource.open(f"sha1://{fake.sha1}", settings=settings(fake, tmp_path)) as f:
        assert f.read(10) == fake.data[:10]
        assert len(fake.asked) == 1 and fake.chunk_gets == [0]  # chunk 0 came with the first
        f.seek(5 * CS + 100)
        assert f.read(10) == fake.data[5 * CS + 100:5 * CS + 110]
        assert f.read(10) == fake.data[5 * CS + 110:5 * CS + 120]  # a short sequential run
        assert sorted(fake.chunk_gets) == [0, 5]
        asked, finds = len(fake.asked), fake.finds
        assert f.read_at(8 * CS, 8 * CS) == fake.data[8 * CS:16 * CS]
        # two halves at once (the file's two workers), each one fileRanges and one findChunks
        assert (len(fake.asked), fake.finds) == (asked + 2, finds + 2)
        assert sorted(fake.chunk_gets) == [0, 5, *range(8, 16)]
        assert sorted(r["ranges"] for r in fake.asked[asked:]) == [[[8 * CS, 4 * CS]],
                                                                   [[12 * CS, 4 * CS]]]


def test_a_read_over_many_runs_of_missing_chunks(fake: ChunkFake, tmp_path: Path) -> None:
    """The chunks a read misses between cached ones go as runs, 16 runs per fileRanges
    (the source's own reads: the file above it asks for uncached runs one by one)."""
    with kachery_resource.open(f"sha1://{fake.sha1}", settings=settings(fake, tmp_path)) as f:
        src = source_of(f)
        assert isinstance(src, ChunkSource)
        for k in range(2, 40, 2):  # every even chunk cached: 19 of them
            assert src.read_range(k * CS, k * CS + 1) == fake.data[k * CS:k * CS + 1]
        asked = len(fake.asked)
        assert src.read_range(CS, 40 * CS) == fake.data[CS:40 * CS]  # 20 odd chunks missing
        assert [len(r["ranges"]) for r in fake.asked[asked:]] == [16, 4]
        assert sorted(fake.chunk_gets) == list(range(1, 40))


def test_concurrent_readers_fetch_each_chunk_once(fake: ChunkFake, tmp_path: Path) -> None:
    """Threads reading the same and neighbouring chunks at once: every chunk is asked for,
    found and downloaded once, and each thread gets its bytes."""
    with kachery_resource.open(f"sha1://{fake.sha1}", settings=settings(fake, tmp_path)) as f:
        src = source_of(f)
        assert isinstance(src, ChunkSource)
        spans = [((k % 4) * 3 * CS + 7, (k % 4) * 3 * CS + 4 * CS) for k in range(16)]
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda span: src.read_range(*span), spans))
        assert results == [fake.data[a:b] for a, b in spans]
        assert sorted(fake.chunk_gets) == list(range(13))  # chunks 0-12, once each
        asked = [i for r in fake.asked for off, n in r["ranges"]
                 for i in range(off // CS, (off + n) // CS)]
        assert len(asked) == len(set(asked))


@pytest.mark.parametrize("old_gateway", [False, True])
def test_chunk_urls_are_asked_for_while_the_daemon_uploads(fake: ChunkFake, tmp_path: Path,
                                                           old_gateway: bool) -> None:
    """Once the list is known, a read's chunk URLs are asked for (includePending) at the
    same time as the chunks; a gateway that refuses includePending is asked afterwards."""
    fake.old_gateway = old_gateway
    with kachery_resource.open(f"sha1://{fake.sha1}", settings=settings(fake, tmp_path),
                               max_readahead=0) as f:
        assert f.read(10) == fake.data[:10]  # the first read checks the list
        for k in (3, 7, 30):
            assert f.read_at(k * CS + 5, 10) == fake.data[k * CS + 5:k * CS + 15]
    assert fake.pending_finds == (0 if old_gateway else 3)
    assert sorted(fake.chunk_gets) == [0, 3, 7, 30]
