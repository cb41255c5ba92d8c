"""``kachery_resource.open`` against our real gateway (local directory and SeaweedFS)."""

from __future__ import annotations

import dataclasses
import io
import itertools
import os
import random
import threading
import time
from pathlib import Path

import pytest

import kachery_resource
from kachery_resource import FileNotFoundOnResource, GatewayError, IntegrityError, InvalidUriError
from kachery_resource.gateway.app import build_app
from kachery_resource.gateway.settings import load_settings
from kachery_resource.store import LocalStore

from .conftest import Served, blob, serve

KIB = 1024
BLOCK = 64 * KIB


def test_ranges_at_every_edge(zone: Served, kc_dir: Path) -> None:
    data = blob(3 * BLOCK + 123)
    sha1 = zone.put(data)
    with kachery_resource.open(f"sha1://{sha1}?label=x.bin", settings=zone.settings(kc_dir),
                               block_size=BLOCK) as f:
        assert (f.size, f.seekable(), f.readable(), f.writable()) == (len(data), True, True, False)
        assert f.read(1) == data[:1]                                 # first byte
        f.seek(-1, io.SEEK_END)
        assert f.read(1) == data[-1:] and f.tell() == len(data)      # last byte
        assert f.read(10) == b""                                     # at the end
        f.seek(BLOCK - 5)
        assert f.read(10) == data[BLOCK - 5:BLOCK + 5]               # across a block boundary
        f.seek(BLOCK)
        assert f.read(BLOCK) == data[BLOCK:2 * BLOCK]                # exactly one block
        f.seek(len(data) - 5)
        assert f.read(100) == data[-5:]                              # past the end: cut short
        f.seek(len(data) + 10)
        assert f.read() == b"" and f.tell() == len(data) + 10        # beyond the end
        f.seek(-10, io.SEEK_CUR)
        assert f.tell() == len(data)
        buffer = bytearray(BLOCK + 1)
        f.seek(1)
        assert f.readinto(buffer) == BLOCK + 1 and bytes(buffer) == data[1:BLOCK + 2]
        assert f.read_at(2 * BLOCK - 1, 2) == data[2 * BLOCK - 1:2 * BLOCK + 1]
        assert f.tell() == BLOCK + 2                                 # read_at keeps the position
        f.seek(0)
        assert f.read() == data
        with pytest.raises(ValueError, match="negative seek"):
            f.seek(-1)
    with pytest.raises(ValueError, match="closed file"):
        f.read(1)


def test_empty_file(zone: Served, kc_dir: Path) -> None:
    sha1 = zone.put(b"")
    with kachery_resource.open(f"sha1://{sha1}", settings=zone.settings(kc_dir)) as f:
        assert f.size == 0 and f.read() == b"" and f.read(5) == b""
        assert f.verified is True


@pytest.mark.parametrize("gateway_ttl", [2])
def test_expired_url_is_refreshed(zone: Served, kc_dir: Path, gateway_ttl: int) -> None:
    data = blob(4 * BLOCK, seed=2)
    sha1 = zone.put(data)
    with kachery_resource.open(f"sha1://{sha1}", settings=zone.settings(kc_dir),
                               block_size=BLOCK) as f:
        assert f.read(10) == data[:10]
        time.sleep(3.5)  # the signed URL has expired
        f.seek(3 * BLOCK)
        assert f.read(BLOCK) == data[3 * BLOCK:]
    find_calls = [r for r in zone.requests if r[:2] == ("POST", "/api/gateway")]
    assert len(find_calls) >= 2  # open, then again for the expired URL


def test_whole_read_verifies_sha1(local_zone: Served, kc_dir: Path) -> None:
    data = blob(5 * BLOCK + 7, seed=3)
    sha1 = local_zone.put(data)
    with kachery_resource.open(f"sha1://{sha1}", settings=local_zone.settings(kc_dir),
                               block_size=BLOCK) as f:
        chunks = []
        while chunk := f.read(100 * KIB):
            chunks.append(chunk)
        assert b"".join(chunks) == data
        assert f.verified is True


def test_tampered_object_is_detected(local_zone: Served, kc_dir: Path) -> None:
    data = blob(5 * BLOCK, seed=4)
    sha1 = local_zone.put(data)
    local_zone.object_path(sha1).write_bytes(data[:-1] + b"!")  # same size, one byte changed
    with kachery_resource.open(f"sha1://{sha1}", settings=local_zone.settings(kc_dir),
                               block_size=BLOCK) as f:
        assert f.read(BLOCK) == data[:BLOCK]  # a part cannot be checked yet
        with pytest.raises(IntegrityError, match=f"not {sha1}"):
            while f.read(BLOCK):
                pass
        assert f.verified is False
        f.seek(0)
        with pytest.raises(IntegrityError):
            f.read(1)  # nothing more is served from a copy known to be corrupt


def test_concurrent_readers_download_each_block_once(local_zone: Served, kc_dir: Path) -> None:
    data = blob(32 * BLOCK + 99, seed=5)
    sha1 = local_zone.put(data)
    threads, errors = 8, []
    barrier = threading.Barrier(threads)
    with kachery_resource.open(f"sha1://{sha1}", settings=local_zone.settings(kc_dir),
                               block_size=BLOCK, max_request=4 * BLOCK) as f:
        def reader(seed: int) -> None:
            rng = random.Random(seed)
            barrier.wait()
            try:
                for _ in range(30):
                    offset, size = rng.randrange(len(data)), rng.randrange(1, 3 * BLOCK)
                    assert f.read_at(offset, size) == data[offset:offset + size]
                assert f.read_at(0, len(data)) == data
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        workers = [threading.Thread(target=reader, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        assert errors == []
    served = sorted(_parse_range(r) for r in local_zone.ranges())
    assert sum(end - start for start, end in served) == len(data)  # every byte exactly once
    for (_, end), (start, _) in itertools.pairwise(served):
        assert end == start


def _parse_range(header: str) -> tuple[int, int]:
    start, end = header.removeprefix("bytes=").split("-")
    return int(start), int(end) + 1


def test_sequential_reads_grow_their_requests(local_zone: Served, kc_dir: Path) -> None:
    data = blob(64 * BLOCK, seed=6)
    sha1 = local_zone.put(data)
    with kachery_resource.open(f"sha1://{sha1}", settings=local_zone.settings(kc_dir),
                               block_size=BLOCK, max_request=16 * BLOCK,
                               max_readahead=32 * BLOCK) as f:
        while f.read(BLOCK // 2):
            pass
        sizes = [end - start for start, end in f.range_requests]
    assert max(sizes) >= 8 * BLOCK  # read-ahead grew beyond single blocks
    assert len(sizes) < 64 // 4


def test_a_short_sequential_run_reads_ahead_at_most_half_of_it(local_zone: Served,
                                                               kc_dir: Path) -> None:
    """Six sequential reads (the chunks of an HDF5 slice): read-ahead grows, but never past
    half of what the run has read, so little is fetched for nothing."""
    data = blob(400 * BLOCK, seed=21)
    sha1 = local_zone.put(data)
    with kachery_resource.open(f"sha1://{sha1}", settings=local_zone.settings(kc_dir),
                               block_size=BLOCK, max_request=16 * BLOCK,
                               max_readahead=64 * BLOCK) as f:
        f.seek(100 * BLOCK)
        for _ in range(6):
            assert len(f.read(15 * BLOCK)) == 15 * BLOCK
        time.sleep(0.5)  # the last read-ahead lands
        fetched = sum(end - start for start, end in f.range_requests)
    assert 90 * BLOCK <= fetched <= 90 * BLOCK * 3 // 2 + BLOCK


def test_missing_file_and_bad_uri(local_zone: Served, kc_dir: Path) -> None:
    with pytest.raises(FileNotFoundOnResource, match="KACHERY_RESOURCE_URL is not set"):
        kachery_resource.open("sha1://" + "0" * 40, settings=local_zone.settings(kc_dir))
    with pytest.raises(InvalidUriError):
        kachery_resource.open("sha1://nothex", settings=local_zone.settings(kc_dir))


def test_bucket_gone_mid_read_is_a_clear_error(kc_dir: Path, tmp_path: Path) -> None:
    data = blob(8 * BLOCK, seed=8)
    served = Served(build_app(load_settings(storage=str(tmp_path / "storage"))))
    serving = serve(served.app, served)
    zone = next(serving)
    sha1 = zone.put(data)
    f = kachery_resource.open(f"sha1://{sha1}", settings=zone.settings(kc_dir), block_size=BLOCK)
    assert f.read(10) == data[:10]
    with pytest.raises(StopIteration):
        next(serving)  # the gateway stops
    f.seek(6 * BLOCK)  # far from what was read ahead
    with pytest.raises(GatewayError, match=f"cannot read bytes {6 * BLOCK}-.* of sha1://{sha1} "
                                           "from the bucket: connection refused"):
        f.read(10)
    f.close()


def test_a_changed_local_file_is_detected(local_zone: Served, kc_dir: Path, tmp_path: Path) -> None:
    linked = tmp_path / "linked.bin"
    linked.write_bytes(blob(3 * BLOCK, seed=10))
    sha1 = LocalStore(kc_dir).link(linked)
    stat = linked.stat()
    with linked.open("r+b") as f:  # same size and mtime, other bytes
        f.write(b"changed")
    os.utime(linked, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with kachery_resource.open(f"sha1://{sha1}", settings=local_zone.settings(kc_dir),
                               block_size=BLOCK) as f, \
            pytest.raises(IntegrityError, match=f"came from the local file {linked}"):
        f.read()
    assert local_zone.ranges() == []  # read in place, not from the bucket


def test_a_large_read_goes_out_as_several_ranges(local_zone: Served, kc_dir: Path) -> None:
    data = blob(32 * BLOCK, seed=11)
    sha1 = local_zone.put(data)
    with kachery_resource.open(f"sha1://{sha1}", settings=local_zone.settings(kc_dir),
                               block_size=BLOCK, workers=4) as f:
        assert f.read_at(0, len(data)) == data and f.verified is True
        assert sorted(f.range_requests) == [(k * 8 * BLOCK, (k + 1) * 8 * BLOCK) for k in range(4)]
    assert len(local_zone.ranges()) == 4


def test_kachery_uri_zone_wins_over_the_settings(local_zone: Served, kc_dir: Path) -> None:
    data = blob(BLOCK + 7)
    sha1 = local_zone.put(data)
    elsewhere = dataclasses.replace(local_zone.settings(kc_dir), zone="nosuchzone")
    with kachery_resource.open(f"kachery:default:sha1:{sha1}:rec.bin", settings=elsewhere) as f:
        assert f.read() == data and f.verified is True
    with pytest.raises(GatewayError, match="nosuchzone"):
        kachery_resource.open(f"sha1://{sha1}", settings=elsewhere)
