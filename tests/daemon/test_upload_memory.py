"""A refused upload frees its read buffers at once, not when the cyclic collector runs
(soaks found them held for minutes: a raised refusal made a reference cycle, twice)."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import socket
import threading
import time
import tracemalloc
import weakref
from pathlib import Path

import pytest

from kachery_resource.daemon.uploads.gateway import UploadTarget
from kachery_resource.daemon.uploads.parts import HASH_BLOCK, HashingStopped, SequentialHasher
from kachery_resource.daemon.uploads.put import BLOCK_SIZE, HashedBlocks
from kachery_resource.daemon.uploads.single import SinglePlan
from kachery_resource.errors import IntegrityError
from kachery_resource.store import LocalFile


def _read_all(blocks: HashedBlocks) -> None:
    blocks.start()
    for _ in blocks:
        pass


@pytest.mark.parametrize("size", [1000, 3 * BLOCK_SIZE + 5])  # refused in start / at the end
def test_refused_upload_frees_its_buffers_without_the_cyclic_collector(tmp_path: Path,
                                                                     size: int) -> None:
    path = tmp_path / "changed.bin"
    path.write_bytes(os.urandom(size))
    stale = LocalFile(hashlib.sha1(b"what it held when linked").hexdigest(), path, size,
                      path.stat().st_mtime, linked=True)
    good = LocalFile(hashlib.sha1(path.read_bytes()).hexdigest(), path, size,
                     path.stat().st_mtime, linked=True)
    gc.collect()
    gc.disable()
    try:
        refs = []
        for local in (stale, good):
            blocks = HashedBlocks(str(path), local, threading.Event())
            refs.append(weakref.ref(blocks))
            try:
                _read_all(blocks)
            except IntegrityError:
                pass
            finally:
                blocks.close()
            del blocks
        assert [ref() is None for ref in refs] == [True, True]
    finally:
        gc.enable()


def test_refused_streamed_upload_frees_its_buffers_without_the_cyclic_collector(
        tmp_path: Path) -> None:
    """The single plan's PUT from a worker thread, refused at the end of an edited file: the
    failed future kept in the awaiting frame made a cycle through the exception's traceback
    (the 30-minute soak's last growing daemon: 2 MiB per refused upload of its edited file)."""
    size = 2 * BLOCK_SIZE - 1000
    path = tmp_path / "edited.bin"
    path.write_bytes(os.urandom(size))
    stale = LocalFile(hashlib.sha1(b"what it held when linked").hexdigest(), path, size,
                      path.stat().st_mtime, linked=True)
    with socket.create_server(("127.0.0.1", 0)) as server:
        threading.Thread(target=_swallow, args=(server,), daemon=True).start()
        target = UploadTarget(False, "key", f"http://127.0.0.1:{server.getsockname()[1]}/x", {})
        plan = SinglePlan(gateway=None, max_threads=2)  # type: ignore[arg-type]  # _put needs none

        async def refused_uploads() -> None:
            for _ in range(5):
                with pytest.raises(IntegrityError):
                    await plan._put(stale, target, lambda n: None)

        gc.collect()
        gc.disable()
        tracemalloc.start()
        try:
            asyncio.run(refused_uploads())
            time.sleep(0.3)  # the pool's thread lets go of its last work item
            held = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
            gc.enable()
            plan.close()
    assert held < BLOCK_SIZE, f"{held / 2**20:.2f} MiB still held after 5 refused uploads"


def _swallow(server: socket.socket) -> None:
    """Accept connections and read whatever they send (a PUT target that never answers
    before the client stops)."""
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        threading.Thread(target=lambda c=conn: _drain(c), daemon=True).start()


def _drain(conn: socket.socket) -> None:
    with conn:
        while conn.recv(1 << 20):
            pass


def test_a_stopped_hasher_frees_its_buffer_while_its_error_is_still_held(tmp_path: Path) -> None:
    """The multipart hasher's 8 MiB buffer goes when it stops, even while something (a
    future, a cycle through its traceback) still holds the error it raised."""
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(3 * HASH_BLOCK))
    hasher = SequentialHasher(path, 3 * HASH_BLOCK, HASH_BLOCK, 3, lambda n: None)
    hasher.allow(1)  # one part, then it waits for its turn, and is stopped
    errors: list[BaseException] = []

    def run() -> None:
        try:
            hasher.run()
        except HashingStopped as exc:
            errors.append(exc)  # held, traceback and all
    gc.collect()
    tracemalloc.start()
    try:
        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(0.3)
        hasher.stop()
        thread.join(5)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(errors) == 1 and errors[0].__traceback__ is not None
    assert held < HASH_BLOCK // 4, f"{held / 2**20:.2f} MiB still held"
