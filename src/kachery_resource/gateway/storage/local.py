"""Storage in a local directory; the gateway serves its objects itself through signed URLs.

An upload (PUT) is hashed while it is received, into a hidden temporary file that is
then renamed ``<upload id>.<sha1>.<size>`` beside its staging key; finalize compares
that name with what the client declared and renames the file to its content key, so
the bytes are never read twice and a file under a sha1 key always hashes to it.

A multipart upload is a directory (its objectKey) whose parts are written in place into
the one file that becomes the object, and hashed in order while they arrive; see
:mod:`.local_parts` and :mod:`.assembly`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from ...errors import ConfigError
from ..problems import ApiError
from ..signed_urls import UrlSigner
from .assembly import AssemblyClosed
from .base import PartInfo, Storage, UrlContext, content_mismatch, nothing_uploaded
from .local_parts import PART_KEY, LocalParts, scan_markers

BATCH_BYTES = 4 * 1024 * 1024
SMALL_BODY = 1024 * 1024  # a PUT body up to this size is written in one worker-thread trip
SECRET_FILE = ".kachery-gateway-secret"
_RECEIVED = re.compile(r"(?P<upload>[0-9a-f]{32})\.(?P<sha1>[0-9a-f]{40})\.(?P<size>[0-9]+)")


class _HashingWriter:
    """Writes to a file and hashes what it writes; used from one worker thread at a time."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.sha1 = hashlib.sha1()
        self.size = 0

    def write(self, chunks: list[bytes]) -> None:
        for data in chunks:
            self.f.write(data)
            self.sha1.update(data)
            self.size += len(data)


class LocalStorage(Storage):
    """Objects are files under ``root``; keys are their relative paths."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.description = f"local directory {self.root}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            what = "it exists and is not a directory" if self.root.exists() else "a parent of it is a file"
            raise ConfigError(f"cannot use {self.root} as the gateway's storage directory: {what}; "
                              "give --storage (or `storage` in the config) a directory, or a path "
                              "where one can be created") from None
        except OSError as exc:
            raise ConfigError(f"cannot create the gateway's storage directory {self.root}: "
                              f"{exc.strerror or exc}; choose another --storage or fix its "
                              "permissions") from None
        secret = self.root / SECRET_FILE
        try:
            self.signer = UrlSigner.from_secret_file(secret)
        except OSError as exc:
            raise ConfigError(f"cannot read or create the URL-signing secret {secret}: "
                              f"{exc.strerror or exc}; the gateway must be able to read and write "
                              "its storage directory") from None
        self.parts = LocalParts()

    def path(self, key: str) -> Path:
        """The file of ``key`` (keys are validated, so this stays under root)."""
        path = self.root / key
        if not path.is_relative_to(self.root):  # defence in depth
            raise ApiError(400, "invalid_key", f"object key {key!r} leaves the storage")
        return path

    async def size_of(self, key: str) -> int | None:
        def stat() -> int | None:
            try:
                st = self.path(key).stat()
            except (FileNotFoundError, NotADirectoryError):
                return None
            return st.st_size if os.path.isfile(self.path(key)) else None

        return await asyncio.to_thread(stat)

    async def read_small(self, key: str, limit: int = 1 << 20) -> bytes | None:
        def read() -> bytes | None:
            try:
                with open(self.path(key), "rb") as f:
                    return f.read(limit)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return None

        return await asyncio.to_thread(read)

    async def write_small(self, key: str, data: bytes) -> None:
        def write() -> None:
            path = self.path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
            tmp.write_bytes(data)
            os.replace(tmp, path)

        await asyncio.to_thread(write)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, missing_ok=True)

    async def list_keys(self, prefix: str) -> list[str]:
        def walk() -> list[str]:
            top = self.path(prefix)
            found = []
            for dirpath, _dirs, files in os.walk(top):
                for name in files:
                    if not name.startswith("."):
                        found.append(Path(dirpath, name).relative_to(self.root).as_posix())
            return sorted(found)

        return await asyncio.to_thread(walk)

    async def list_modified(self, prefix: str) -> dict[str, float]:
        def walk() -> dict[str, float]:
            found = {}
            for dirpath, _dirs, files in os.walk(self.path(prefix)):
                for name in files:
                    if name.startswith("."):
                        continue
                    p = Path(dirpath, name)
                    try:
                        found[p.relative_to(self.root).as_posix()] = p.stat().st_mtime
                    except FileNotFoundError:
                        continue
            return found

        return await asyncio.to_thread(walk)

    async def list_folders(self, prefix: str, after: str = "", limit: int = 1000) -> list[str]:
        def scan() -> list[str]:
            try:
                names = sorted(e.name for e in os.scandir(self.path(prefix))
                               if e.is_dir() and not e.name.startswith(".") and e.name > after)
            except (FileNotFoundError, NotADirectoryError):
                return []
            return names[:limit]

        return await asyncio.to_thread(scan)

    def read_blocks(self, key: str, block: int = 1 << 20) -> Iterator[bytes]:
        with open(self.path(key), "rb") as f:
            while data := f.read(block):
                yield data

    def download_url(self, ctx: UrlContext, key: str, ttl_sec: int) -> str:
        return self.signer.url(ctx.base_url, "GET", ctx.zone, key, ttl_sec)

    def upload_url(self, ctx: UrlContext, key: str, ttl_sec: int, max_size: int) -> str:
        return self.signer.url(ctx.base_url, "PUT", ctx.zone, key, ttl_sec, max_size)

    async def receive(self, key: str, body: AsyncIterator[bytes], max_size: int | None) -> tuple[str, int]:
        """Store a PUT body for staging ``key`` while hashing it; returns (sha1, size).

        Receiving (event loop) and writing + hashing (a worker thread) overlap, one
        4 MiB batch apart, so memory stays flat. More than ``max_size`` bytes is a 413.
        A multipart part is written in place, not hashed: the answer is (its etag, size).
        """
        part_key = PART_KEY.fullmatch(key)
        if part_key is not None:
            directory = self.path(part_key["upload"])
            part = await asyncio.to_thread(self.parts.begin, directory, int(part_key["number"]))
            try:
                await _pump(body, max_size, part.write)
            except BaseException:
                part.close()
                raise
            etag = await asyncio.to_thread(self.parts.done, part)
            return etag, part.size
        path = self.path(key)
        tmp = path.with_name(f".{path.name}.part-{secrets.token_hex(6)}")
        head, small = await _read_small_body(body, max_size)
        if small:  # most chunks and small files: one trip to a worker thread
            return await asyncio.to_thread(_write_received, path, tmp, head)
        f = await asyncio.to_thread(_create, tmp)
        writer = _HashingWriter(f)
        try:
            await asyncio.to_thread(writer.write, head)
            await _pump(body, max_size, writer.write, sum(map(len, head)))
            await asyncio.to_thread(f.close)
            return await asyncio.to_thread(_keep_received, path, tmp, writer)
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise

    async def promote(self, staging: str, content: str, size: int, sha1: str) -> None:
        def move() -> None:
            path = self.path(staging)
            received = path.with_name(f"{path.name}.{sha1}.{size}")
            target = self.path(content)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(received, target)
                return
            except FileNotFoundError:
                pass
            others = sorted(path.parent.glob(f"{path.name}.*")) if path.parent.is_dir() else []
            others = [p for p in others if _RECEIVED.fullmatch(p.name)]
            for p in others:
                p.unlink(missing_ok=True)
            _remove_empty_dirs(path.parent, self.root)
            if others:
                got = _RECEIVED.fullmatch(others[-1].name)
                assert got is not None
                raise content_mismatch(sha1, size, got["sha1"], int(got["size"]))
            if not target.is_file():
                raise nothing_uploaded(staging)

        def move_and_tidy() -> None:
            try:
                move()
            finally:
                _remove_empty_dirs(self.path(staging).parent, self.root)

        await asyncio.to_thread(move_and_tidy)

    async def put_verified_empty(self, content: str) -> None:
        await self.write_small(content, b"")

    async def mp_create(self, key: str) -> str:
        await asyncio.to_thread(self.path(key).mkdir, parents=True, exist_ok=True)
        return ""

    async def mp_prepare(self, key: str, backend_id: str, size: int, part_size: int) -> None:
        await asyncio.to_thread(self.parts.prepare, self.path(key), size, part_size)

    def mp_part_url(self, ctx: UrlContext, key: str, backend_id: str, number: int, ttl_sec: int,
                    max_size: int) -> str:
        return self.signer.url(ctx.base_url, "PUT", ctx.zone, f"{key}/{number:05d}", ttl_sec, max_size)

    async def mp_parts(self, key: str, backend_id: str) -> dict[int, PartInfo]:
        def scan() -> dict[int, PartInfo]:
            return {n: PartInfo(n, size, name.split(".")[1])
                    for n, (name, size) in scan_markers(self.path(key)).items()}

        return await asyncio.to_thread(scan)

    async def mp_complete(self, key: str, backend_id: str, parts: list[PartInfo], content: str,
                          size: int, sha1: str) -> None:
        names = [f"{p.number:05d}.{p.etag}.{p.size}" for p in parts]
        try:
            got_sha1, got_size = await asyncio.to_thread(
                self.parts.complete, self.path(key), names, self.path(content), size, sha1)
        except (FileNotFoundError, AssemblyClosed) as exc:
            raise nothing_uploaded(key) from exc
        except ApiError as exc:
            if exc.code == "upload_missing":
                raise nothing_uploaded(key) from exc
            raise
        if (got_sha1, got_size) != (sha1, size):
            raise content_mismatch(sha1, size, got_sha1, got_size)

    async def mp_abort(self, key: str, backend_id: str) -> None:
        self.parts.drop(self.path(key))
        await asyncio.to_thread(shutil.rmtree, self.path(key), True)

    async def mp_cleanup(self, root: str, max_age_sec: float) -> int:
        def sweep() -> int:
            cutoff = time.time() - max_age_sec
            top = self.path(root)
            if not top.is_dir():
                return 0
            removed = 0
            for hash_dir in list(top.iterdir()):
                if not hash_dir.is_dir():
                    continue
                for entry in list(hash_dir.iterdir()):
                    upload = hash_dir / entry.name.removesuffix(".upload.json")
                    record = hash_dir / f"{upload.name}.upload.json"
                    if entry != upload and upload.exists():
                        continue  # handled with its directory
                    files = [record, *(upload.rglob("*") if upload.is_dir() else [upload])]
                    times = [f.stat().st_mtime for f in files if f.exists()]
                    if times and max(times) < cutoff:
                        shutil.rmtree(upload, ignore_errors=True)
                        record.unlink(missing_ok=True)
                        removed += 1
                _remove_empty_dirs(hash_dir, top)
            return removed

        removed = await asyncio.to_thread(sweep)
        await asyncio.to_thread(self.parts.drop_missing)
        return removed

    async def cleanup(self, prefix: str, max_age_sec: float) -> int:
        def sweep() -> int:
            cutoff = time.time() - max_age_sec
            removed = 0
            top = self.path(prefix)
            for dirpath, _dirs, files in os.walk(top, topdown=False):
                for name in files:
                    p = Path(dirpath, name)
                    try:
                        if p.stat().st_mtime < cutoff:
                            p.unlink()
                            removed += 1
                    except FileNotFoundError:
                        continue
                if Path(dirpath) != top:
                    _remove_empty_dirs(Path(dirpath), top)
            _remove_empty_dirs(top, self.root)
            return removed

        return await asyncio.to_thread(sweep)


async def _read_small_body(body: AsyncIterator[bytes], max_size: int | None
                           ) -> tuple[list[bytes], bool]:
    """The first pieces of ``body``, up to ``SMALL_BODY`` bytes; True if that was all."""
    head: list[bytes] = []
    received = 0
    async for chunk in body:
        head.append(chunk)
        received += len(chunk)
        _check_size(received, max_size)
        if received > SMALL_BODY:
            return head, False
    return head, True


def _write_received(path: Path, tmp: Path, pieces: list[bytes]) -> tuple[str, int]:
    """A whole small body: written, hashed and kept in one go (see :func:`_keep_received`)."""
    try:
        with _create(tmp) as f:
            writer = _HashingWriter(f)
            writer.write(pieces)
        return _keep_received(path, tmp, writer)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _keep_received(path: Path, tmp: Path, writer: _HashingWriter) -> tuple[str, int]:
    """Name the received body after its sha1 and size (what finalize checks) and drop what
    an earlier PUT of the same key left."""
    sha1 = writer.sha1.hexdigest()
    final = path.with_name(f"{path.name}.{sha1}.{writer.size}")
    os.replace(tmp, final)
    _drop_older_versions(final, path.name)
    return sha1, writer.size


def _check_size(received: int, max_size: int | None) -> None:
    if max_size is not None and received > max_size:
        raise ApiError(413, "upload_too_large",
                       f"the upload is larger than the {max_size} bytes declared in "
                       "initiateFileUpload")


async def _pump(body: AsyncIterator[bytes], max_size: int | None,
                write: Callable[[list[bytes]], None], received: int = 0) -> None:
    """Feed ``body`` to ``write`` in a worker thread, 4 MiB batches, one batch in flight
    (``received``: bytes of it already written)."""
    pending: asyncio.Future[None] | None = None
    batch: list[bytes] = []
    batch_size = 0
    try:
        async for chunk in body:
            received += len(chunk)
            _check_size(received, max_size)
            batch.append(chunk)
            batch_size += len(chunk)
            if batch_size >= BATCH_BYTES:
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(asyncio.to_thread(write, batch))
                batch, batch_size = [], 0
        if pending is not None:
            await pending
        pending = None
        await asyncio.to_thread(write, batch)
    finally:
        if pending is not None:
            await asyncio.gather(pending, return_exceptions=True)


def _create(path: Path) -> BinaryIO:
    """Open a new file, making its directory (again, if a finishing upload just removed it)."""
    for _ in range(5):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return open(path, "xb")
        except FileNotFoundError:
            continue
    raise ApiError(503, "storage_busy", "could not create the upload file; try again")


def _drop_older_versions(final: Path, name: str) -> None:
    """A re-sent body replaces what an earlier PUT of the same key left."""
    for other in final.parent.glob(f"{name}.*"):
        if other != final and _RECEIVED.fullmatch(other.name):
            other.unlink(missing_ok=True)


def _remove_empty_dirs(directory: Path, stop: Path) -> None:
    """Remove ``directory`` and its parents while they are empty, never ``stop`` itself."""
    while directory != stop and directory.is_relative_to(stop):
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent
