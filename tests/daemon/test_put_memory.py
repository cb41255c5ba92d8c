"""A refused upload frees its read buffers at once, not when the cyclic collector runs
(a soak found them held for minutes: the raised refusal made a reference cycle)."""

from __future__ import annotations

import gc
import hashlib
import os
import threading
import weakref
from pathlib import Path

import pytest

from kachery_resource.daemon.uploads.put import BLOCK_SIZE, HashedBlocks
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
