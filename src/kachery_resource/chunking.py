"""Fixed-size, aligned chunks of a file and its signed chunk list (docs/design-chunks.md).

The chunk size is a function of the file size alone, so the daemon, the gateway and a
reader agree without asking (:func:`chunk_size_for`). A :class:`ChunkList` holds the sha1
of every chunk; :meth:`ChunkList.signed` is the document the daemon registers with the
gateway, in the envelope every gateway call uses (``identity.signed_envelope``), and
:func:`read_signed_chunk_list` is the one check of such a document (gateway and reader).

:class:`ChunkRecords` keeps the lists the daemon computed, keyed by sha1, in the local
store: ``<store>/kachery-resource/chunks/sha1/ab/cd/ef/<sha1>`` =
``{"size", "chunkSize", "chunkSha1"}``. A list depends only on the bytes, so a record
stays valid for its sha1 whichever file holds them; the daemon still checks each chunk's
sha1 against it before sending, so a file changed since cannot send wrong bytes. A file
of one chunk (up to 4 MiB: most files) needs neither a second digest nor a record. Above
4 MiB, chunks are small (256 KiB up to 16 GiB) so that the scattered small reads of a
format like HDF5 cost little each.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from .errors import FileChangedError, IntegrityError
from .hashing import sha1_and_chunks_of_file, sha1_of_file
from .identity import ClientKeys, is_client_id, signed_envelope, verify_signature
from .uri import is_sha1_hex, sha1_path_parts

KIB = 1024
MIB = 1024 * KIB
ONE_CHUNK_MAX = 4 * MIB  # a file up to this size is one chunk: the file itself
MIN_CHUNK_SIZE = 256 * KIB
MAX_CHUNKS = 65536
LIST_VERSION = 2  # version 1 had chunks of at least 4 MiB
_HEX = re.compile(r"[0-9a-f]*")


def chunk_size_for(size: int) -> int:
    """The chunk size of a ``size``-byte file: the whole file (as ``ONE_CHUNK_MAX``) up to
    4 MiB; above, 256 KiB, or the smallest power of two that keeps the file within
    ``MAX_CHUNKS`` chunks (512 KiB above 16 GiB, 1 MiB above 32 GiB, ...)."""
    if size < 0:
        raise ValueError(f"invalid file size {size}")
    if size <= ONE_CHUNK_MAX:
        return ONE_CHUNK_MAX
    need = -(-size // MAX_CHUNKS)
    return max(MIN_CHUNK_SIZE, 1 << max(0, need - 1).bit_length())


def num_chunks(size: int, chunk_size: int) -> int:
    return -(-size // chunk_size)


def chunks_covering(size: int, chunk_size: int, offset: int, length: int) -> range:
    """The indices of the chunks holding bytes ``[offset, offset+length)`` (clipped to the
    file: empty when the range starts at or after its end)."""
    end = min(size, offset + length)
    if offset < 0 or length < 0:
        raise ValueError(f"invalid range offset {offset}, length {length}")
    if offset >= end:
        return range(0)
    return range(offset // chunk_size, num_chunks(end, chunk_size))


@dataclass(frozen=True)
class ChunkList:
    """The sha1 of every chunk of the file ``sha1`` (``size`` bytes, chunks of ``chunk_size``)."""

    sha1: str
    size: int
    chunk_size: int
    chunk_sha1: str  # 40 hex characters per chunk, concatenated

    def __post_init__(self) -> None:
        if not (is_sha1_hex(self.sha1) and self.chunk_size == chunk_size_for(self.size)
                and len(self.chunk_sha1) == 40 * num_chunks(self.size, self.chunk_size)
                and _HEX.fullmatch(self.chunk_sha1)):
            raise IntegrityError(f"not a valid chunk list of sha1://{self.sha1} "
                                 f"({self.size} bytes, chunk size {self.chunk_size})")

    @property
    def count(self) -> int:
        return num_chunks(self.size, self.chunk_size)

    def sha1_of(self, index: int) -> str:
        """The sha1 of chunk ``index``."""
        if not 0 <= index < self.count:
            raise IndexError(f"chunk {index} of a file of {self.count} chunks")
        return self.chunk_sha1[40 * index:40 * index + 40]

    def span(self, index: int) -> tuple[int, int]:
        """``(offset, length)`` of chunk ``index``."""
        self.sha1_of(index)
        offset = index * self.chunk_size
        return offset, min(self.chunk_size, self.size - offset)

    def payload(self, zone: str) -> dict[str, Any]:
        return {"type": "chunkList", "version": LIST_VERSION, "zone": zone, "hashAlg": "sha1",
                "hash": self.sha1, "size": self.size, "chunkSize": self.chunk_size,
                "chunkSha1": self.chunk_sha1}

    def signed(self, keys: ClientKeys, zone: str) -> bytes:
        """The signed chunk list document, as stored in the bucket (UTF-8 JSON)."""
        return json.dumps(signed_envelope(keys, self.payload(zone)),
                          separators=(",", ":")).encode()


def read_signed_chunk_list(data: bytes, zone: str) -> tuple[ChunkList, str]:
    """Check a signed chunk list document; returns the list and its signer's client id, or
    raises IntegrityError saying what is wrong."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise IntegrityError("the chunk list is not JSON") from None
    payload = doc.get("payload") if isinstance(doc, dict) else None
    if not isinstance(payload, dict):
        raise IntegrityError("the chunk list has no payload")
    signer, signature = doc.get("fromClientId"), doc.get("signature")
    if not (is_client_id(signer) and isinstance(signature, str)
            and verify_signature(payload, signer, signature)):
        raise IntegrityError("the chunk list's signature does not verify")
    expected = {"type": "chunkList", "version": LIST_VERSION, "zone": zone, "hashAlg": "sha1"}
    for key, value in expected.items():
        if payload.get(key) != value:
            raise IntegrityError(f"the chunk list's {key} is {payload.get(key)!r}, not {value!r}")
    sha1, size, chunk_size, chunk_sha1 = (payload.get("hash"), payload.get("size"),
                                          payload.get("chunkSize"), payload.get("chunkSha1"))
    if not (isinstance(sha1, str) and isinstance(chunk_sha1, str) and _is_int(size)
            and _is_int(chunk_size)):
        raise IntegrityError("the chunk list lacks hash, size, chunkSize or chunkSha1")
    return ChunkList(sha1, size, chunk_size, chunk_sha1), str(signer)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class ChunkRecords:
    """The chunk lists computed on this machine, kept in the local store at ``root``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root) / "kachery-resource" / "chunks" / "sha1"

    def path(self, sha1: str) -> Path:
        return self.root.joinpath(*sha1_path_parts(sha1))

    def get(self, sha1: str, size: int) -> ChunkList | None:
        """The recorded list of ``sha1``, or None (none, unreadable, or not for ``size``).
        A file of one chunk (or none) needs no record: its chunk is the file."""
        if size <= chunk_size_for(size):
            return ChunkList(sha1, size, chunk_size_for(size), sha1 if size else "")
        try:
            rec = json.loads(self.path(sha1).read_text())
            found = ChunkList(sha1, rec["size"], rec["chunkSize"], rec["chunkSha1"])
        except (OSError, ValueError, KeyError, TypeError, IntegrityError):
            return None
        return found if found.size == size else None

    def put(self, chunks: ChunkList) -> None:
        path = self.path(chunks.sha1)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(5)}")
        tmp.write_text(json.dumps({"size": chunks.size, "chunkSize": chunks.chunk_size,
                                   "chunkSha1": chunks.chunk_sha1}))
        os.replace(tmp, path)

    def hash_file(self, path: Path | str,
                  progress: Callable[[int], None] | None = None) -> ChunkList:
        """Read ``path`` once: its sha1 and chunk list, recorded; returns the list.
        ``progress`` is told the bytes of each block hashed."""
        size = os.stat(path).st_size
        if size <= chunk_size_for(size):  # one chunk: the file's own sha1, no record
            sha1, read = sha1_of_file(path, progress=progress)
            chunk_sha1 = sha1 if read else ""
        else:
            sha1, read, chunk_sha1 = sha1_and_chunks_of_file(path, chunk_size_for(size),
                                                             progress=progress)
        if read != size:
            raise FileChangedError(f"{path} changed size while being hashed; try again")
        chunks = ChunkList(sha1, size, chunk_size_for(size), chunk_sha1)
        if chunks.count < 2:
            return chunks
        with contextlib.suppress(OSError):  # a record is a saving; without one the daemon
            self.put(chunks)                # computes the list on the first range request
        return chunks

    def ensure(self, sha1: str, path: Path | str, size: int) -> ChunkList:
        """The chunk list of ``sha1``, held by ``path``: recorded, else computed from it
        (FileChangedError if its bytes no longer hash to ``sha1``). Blocks: call it in a
        thread from the event loop."""
        found = self.get(sha1, size)
        if found is not None:
            return found
        chunks = self.hash_file(path)
        if chunks.sha1 != sha1:
            raise FileChangedError(f"{path} no longer has sha1 {sha1} (now {chunks.sha1}); "
                                   "link it again")
        return chunks
