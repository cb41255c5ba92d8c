"""Reading a file cold (only on the data owner's machine) through the chunks the daemon
uploads: real gateway, proxy and daemon processes (docs/design-chunks.md).

These need a gateway that serves the chunk requests (``chunkUpload`` in its /api/info);
against one that does not, the reader falls back to the whole file, which
test_resource.py covers, so they are skipped with that reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import requests

import kachery_resource
from kachery_resource.demo import Stack
from kachery_resource.reader.chunk_source import ChunkSource

from .conftest import blob

MIB = 1024 * 1024


def make_recording(path: Path) -> None:
    """An HDF5 file shaped like a recording: groups, attributes, chunked datasets (~30 MB)."""
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as h5:
        h5.attrs["session"] = "cold-read test"
        acq = h5.create_group("acquisition")
        acq.create_dataset("traces", data=rng.integers(-2000, 2000, (900_000, 8), dtype="i4"),
                           chunks=(10_000, 8))
        proc = h5.create_group("processing")
        proc.create_dataset("spikes", data=np.arange(200_000, dtype="f8"), chunks=(20_000,))
        h5.create_group("general").attrs["lab"] = "kachery"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, dict[str, str]]]:
    tmp_path = tmp_path_factory.mktemp("chunks")
    share = tmp_path / "share"
    share.mkdir()
    make_recording(share / "rec.h5")
    (share / "plain.bin").write_bytes(blob(3 * 4 * MIB + 777, seed=11))
    running = Stack(tmp_path / "stack", lambda text: None)
    try:
        lines = running.start(share, daemon_settings="uploadWholeAfterRanges: false\n")
        info = requests.get(f"{running.gateway_url}/api/info", timeout=10).json()
        if "chunkUpload" not in info:
            pytest.skip("the gateway does not serve chunks yet (its chunkUpload capability "
                        "comes with the gateway side of issue 19)")
        yield running, {Path(line.split()[0]).name: line.split()[-1] for line in lines}
    finally:
        running.close()


def uploaded(running: Stack) -> tuple[int, int]:
    """(bytes of chunk objects, bytes of whole objects) in the zone's bucket directory."""
    chunks = whole = 0
    for path in running.bucket.rglob("*"):
        if not path.is_file() or path.name == "list.json" or "staging" in path.parts:
            continue
        if "chunks" in path.parts:
            chunks += path.stat().st_size
        elif "sha1" in path.parts:
            whole += path.stat().st_size
    return chunks, whole


def test_h5py_reads_cold_through_chunks(stack: tuple[Stack, dict[str, str]],
                                        tmp_path: Path) -> None:
    running, uris = stack
    size = (running.workdir.parent / "share" / "rec.h5").stat().st_size
    settings = running.client_settings(tmp_path / "remote")
    with kachery_resource.open(uris["rec.h5"], settings=settings, timeout=60) as f:
        assert isinstance(f._fetcher.source, ChunkSource)  # type: ignore[attr-defined]
        with h5py.File(f, "r") as h5:
            assert sorted(h5) == ["acquisition", "general", "processing"]
            assert h5["general"].attrs["lab"] == "kachery"
            middle = h5["acquisition/traces"][450_000:460_000]
    with h5py.File(running.workdir.parent / "share" / "rec.h5", "r") as h5:
        np.testing.assert_array_equal(middle, h5["acquisition/traces"][450_000:460_000])
    chunks, whole = uploaded(running)
    assert whole == 0 and 0 < chunks < size / 2, (chunks, size)


def test_a_daemon_killed_mid_read_then_back(stack: tuple[Stack, dict[str, str]],
                                            tmp_path: Path) -> None:
    running, uris = stack
    data = blob(3 * 4 * MIB + 777, seed=11)
    settings = running.client_settings(tmp_path / "remote")
    with kachery_resource.open(uris["plain.bin"], settings=settings, timeout=60,
                               max_readahead=0) as f:
        assert f.read(100) == data[:100]
        running.stop_daemon()
        try:
            f.seek(2 * 4 * MIB)
            with pytest.raises(kachery_resource.ResourceOfflineError,
                               match="kachery-resource share"):
                f.read(100)
        finally:
            running.start_daemon()
        f.seek(2 * 4 * MIB)
        assert f.read(100) == data[2 * 4 * MIB:2 * 4 * MIB + 100]
        f.seek(0)
        assert f.read() == data and f.verified is True


def test_the_whole_file_follows_the_first_ranges(tmp_path: Path) -> None:
    """``uploadWholeAfterRanges`` (the default): after the first chunks the daemon uploads
    the whole file in the background, and the open file moves to the bucket."""
    share = tmp_path / "share"
    share.mkdir()
    data = blob(3 * 4 * MIB + 5, seed=12)
    (share / "f.bin").write_bytes(data)
    running = Stack(tmp_path / "stack", lambda text: None)
    try:
        line, = running.start(share)
        if "chunkUpload" not in requests.get(f"{running.gateway_url}/api/info", timeout=10).json():
            pytest.skip("the gateway does not serve chunks yet")
        uri = line.split()[-1]
        settings = running.client_settings(tmp_path / "remote")
        with kachery_resource.open(uri, settings=settings, timeout=60, max_readahead=0) as f:
            assert f.read(10) == data[:10]
            source = f._fetcher.source  # type: ignore[attr-defined]
            assert isinstance(source, ChunkSource)
            for _ in range(400):  # the background upload lands in the bucket
                if uploaded(running)[1] == len(data):
                    break
                time.sleep(0.05)
            assert uploaded(running)[1] == len(data)
            f.seek(2 * 4 * MIB)
            assert f.read(10) == data[2 * 4 * MIB:2 * 4 * MIB + 10]
            assert source._whole is not None  # findChunks said wholeFile: reads the bucket
            assert source.fetched == 1  # only the first chunk was read as a chunk
    finally:
        running.close()
