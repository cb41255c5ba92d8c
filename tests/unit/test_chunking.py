"""Chunk sizes, the chunk list in the same read as the sha1, and the signed list's checks."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from kachery_resource import chunking, hashing
from kachery_resource.chunking import (
    ChunkList,
    ChunkRecords,
    chunk_size_for,
    chunks_covering,
    read_signed_chunk_list,
)
from kachery_resource.errors import FileChangedError, IntegrityError
from kachery_resource.identity import ClientKeys, signed_envelope
from kachery_resource.store import LocalStore

MIB = 1024 * 1024


def test_chunk_size_grows_only_to_stay_within_max_chunks() -> None:
    assert chunk_size_for(0) == chunk_size_for(1) == chunk_size_for(4 * MIB) == 4 * MIB  # one
    assert chunk_size_for(4 * MIB + 1) == 256 * 1024  # 17 chunks
    assert chunk_size_for(16 * 1024**3) == 256 * 1024  # exactly 65536 chunks
    assert chunk_size_for(16 * 1024**3 + 1) == 512 * 1024
    assert chunk_size_for(256 * 1024**3) == 4 * MIB
    assert chunk_size_for(256 * 1024**3 + 1) == 8 * MIB
    big = 5 * 1024**4
    assert -(-big // chunk_size_for(big)) <= chunking.MAX_CHUNKS


@pytest.mark.parametrize(("offset", "length", "expected"), [
    (0, 1, [0]), (9, 1, [2]), (0, 10, [0, 1, 2]), (3, 2, [0, 1]), (4, 4, [1]),
    (7, 100, [1, 2]), (10, 5, []), (50, 1, []),
])
def test_chunks_covering_a_range(offset: int, length: int, expected: list[int]) -> None:
    assert list(chunks_covering(10, 4, offset, length)) == expected  # chunks 0-3 4-7 8-9


@pytest.mark.parametrize("block_size", [1000, 4096, 10000])
@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096, 3 * 4096 + 5])
def test_chunk_sha1s_in_one_read(tmp_path: Path, size: int, block_size: int,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    opened: list[str] = []
    real_open = open

    def counting_open(file: object, *args: object, **kwargs: object) -> object:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", counting_open)
    sha1, read, chunk_sha1 = hashing.sha1_and_chunks_of_file(path, 4096, block_size=block_size)
    assert opened == [str(path)]
    assert (sha1, read) == (hashlib.sha1(data).hexdigest(), size)
    assert chunk_sha1 == "".join(hashlib.sha1(data[i:i + 4096]).hexdigest()
                                 for i in range(0, size, 4096))


def test_link_records_the_chunk_list(tmp_path: Path) -> None:
    """Hashing a file to link it also records its chunk list, keyed by sha1."""
    store = LocalStore(tmp_path / "store")
    path = tmp_path / "data.bin"
    data = os.urandom(4 * MIB + 10)
    path.write_bytes(data)
    sha1 = store.link(path)
    found = ChunkRecords(store.root).get(sha1, len(data))
    assert found is not None and found.count == 17 and found.chunk_size == 256 * 1024
    assert found.sha1_of(16) == hashlib.sha1(data[4 * MIB:]).hexdigest()
    assert ChunkRecords(store.root).get(sha1, len(data) + 1) is None  # not for another size


def test_ensure_refuses_a_file_that_changed(tmp_path: Path) -> None:
    records = ChunkRecords(tmp_path / "store")
    path = tmp_path / "f"
    data = os.urandom(4 * MIB + 1)
    path.write_bytes(data)
    with pytest.raises(FileChangedError, match="no longer has sha1"):
        records.ensure("a" * 40, path, len(data))
    chunks = records.ensure(hashlib.sha1(data).hexdigest(), path, len(data))
    assert chunks.count == 17 and records.get(chunks.sha1, len(data)) == chunks


def test_a_file_of_one_chunk_needs_no_record(tmp_path: Path) -> None:
    """Most files are one chunk: its sha1 is the file's, so link writes nothing more."""
    store = LocalStore(tmp_path / "store")
    path = tmp_path / "small.txt"
    path.write_bytes(b"hello")
    sha1 = store.link(path)
    records = ChunkRecords(store.root)
    assert not records.root.exists()
    chunks = records.get(sha1, 5)
    assert chunks is not None and chunks.count == 1 and chunks.sha1_of(0) == sha1
    empty = records.get(hashlib.sha1(b"").hexdigest(), 0)
    assert empty is not None and empty.count == 0


def test_signed_list_round_trip_and_forgeries() -> None:
    keys = ClientKeys.generate()
    data = os.urandom(100)
    chunks = ChunkList(hashlib.sha1(data).hexdigest(), 100, 4 * MIB, hashlib.sha1(data).hexdigest())
    doc = chunks.signed(keys, "default")
    assert read_signed_chunk_list(doc, "default") == (chunks, keys.client_id)
    with pytest.raises(IntegrityError, match="zone"):
        read_signed_chunk_list(doc, "other")

    forged = json.loads(doc)
    forged["payload"]["chunkSha1"] = "0" * 40  # another chunk: the signature no longer holds
    with pytest.raises(IntegrityError, match="signature"):
        read_signed_chunk_list(json.dumps(forged).encode(), "default")
    forged["fromClientId"] = ClientKeys.generate().client_id  # someone else's name on it
    forged["payload"] = json.loads(doc)["payload"]
    with pytest.raises(IntegrityError, match="signature"):
        read_signed_chunk_list(json.dumps(forged).encode(), "default")

    other = ClientKeys.generate()  # signed, but the list does not fit the file
    bad = json.loads(doc)
    bad["payload"]["chunkSha1"] = "0" * 80
    bad["payload"].pop("timestamp")
    resigned = json.dumps(signed_envelope(other, bad["payload"])).encode()
    with pytest.raises(IntegrityError, match="not a valid chunk list"):
        read_signed_chunk_list(resigned, "default")
    with pytest.raises(IntegrityError, match="not JSON"):
        read_signed_chunk_list(b"{", "default")


def test_lists_of_the_old_chunk_size_are_not_used(tmp_path: Path) -> None:
    """Version 1 had 4 MiB chunks above 4 MiB: such a record is computed again, and such a
    signed list is refused by its version."""
    data = os.urandom(4 * MIB + 5)
    path = tmp_path / "f"
    path.write_bytes(data)
    sha1 = hashlib.sha1(data).hexdigest()
    records = ChunkRecords(tmp_path / "store")
    old = "".join(hashlib.sha1(data[i:i + 4 * MIB]).hexdigest() for i in (0, 4 * MIB))
    records.path(sha1).parent.mkdir(parents=True)
    records.path(sha1).write_text(json.dumps({"size": len(data), "chunkSize": 4 * MIB,
                                              "chunkSha1": old}))
    assert records.get(sha1, len(data)) is None
    assert records.ensure(sha1, path, len(data)).chunk_size == 256 * 1024

    keys = ClientKeys.generate()
    payload = {"type": "chunkList", "version": 1, "zone": "default", "hashAlg": "sha1",
               "hash": sha1, "size": len(data), "chunkSize": 4 * MIB, "chunkSha1": old}
    with pytest.raises(IntegrityError, match="version is 1, not 2"):
        read_signed_chunk_list(json.dumps(signed_envelope(keys, payload)).encode(), "default")
