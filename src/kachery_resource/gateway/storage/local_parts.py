"""Multipart uploads in a local directory: parts written in place, hashed in order.

The upload's directory (its objectKey) holds ``layout.json`` (size, part size), the file
``data`` that becomes the object, and one empty marker ``<n:05d>.<etag>.<size>`` per part
fully written (see :mod:`.assembly` for why markers make the in-order hash safe).

- A part PUT opens ``data``, takes a shared ``flock`` (refused while a completion holds
  the exclusive one), checks ``data`` is still the upload's file (not completed), removes
  the part's old marker, writes the body at the part's offset, then creates a new marker
  (random etag) and tells the upload's :class:`.assembly.PartAssembly`.
- Completion takes the exclusive ``flock`` (it waits for part PUTs still running, so no
  byte changes while it decides), checks the markers are the ones listed, finishes the
  hash (usually only the last part or two are left), and renames ``data`` to the content
  key iff size and sha1 match. Nothing is copied and no part file has to be deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import threading
import time
from pathlib import Path

from ..problems import ApiError, bad_request
from .assembly import DATA_FILE, PartAssembly

LAYOUT_FILE = "layout.json"
MARKER = re.compile(r"(?P<number>[0-9]{5})\.(?P<etag>[0-9a-f]{16,40})\.(?P<size>[0-9]+)")
PART_KEY = re.compile(r"(?P<upload>(?:.+/)?multipart/[0-9a-f]{40}/[0-9a-f]{32})/(?P<number>[0-9]{5})")
LOCK_WAIT_SEC = 30.0


def upload_missing() -> ApiError:
    return ApiError(404, "upload_missing",
                    "this multipart upload no longer exists (completed, aborted or expired); "
                    "start a new one with initiateMultipartUpload")


def scan_markers(directory: Path) -> dict[int, tuple[str, int]]:
    """The part markers in ``directory``: number -> (marker name, size)."""
    found: dict[int, tuple[str, int]] = {}
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for name in os.listdir(directory):
            m = MARKER.fullmatch(name)
            if m:
                found[int(m["number"])] = (name, int(m["size"]))
    return found


class PartWrite:
    """One part PUT in progress: writes at the part's offset (one worker thread at a time)."""

    def __init__(self, directory: Path, number: int, fd: int, offset: int) -> None:
        self.directory = directory
        self.number = number
        self.fd = fd
        self.offset = offset
        self.size = 0

    def write(self, chunks: list[bytes]) -> None:
        for data in chunks:
            view = memoryview(data)
            while view:
                n = os.pwrite(self.fd, view, self.offset + self.size)
                view = view[n:]
                self.size += n

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)  # releases the shared lock


class LocalParts:
    """The multipart uploads of one local storage (thread-safe; methods block briefly)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._assemblies: dict[Path, PartAssembly] = {}
        self._part_sizes: dict[Path, int] = {}

    def prepare(self, directory: Path, size: int, part_size: int) -> None:
        """Lay out a new upload: its directory, ``layout.json`` and an empty ``data``."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / LAYOUT_FILE).write_text(json.dumps({"size": size, "partSize": part_size}))
        (directory / DATA_FILE).touch()

    def part_size(self, directory: Path) -> int:
        with self._lock:
            cached = self._part_sizes.get(directory)
        if cached is not None:
            return cached
        try:
            layout = json.loads((directory / LAYOUT_FILE).read_text())
        except (FileNotFoundError, NotADirectoryError):
            raise upload_missing() from None
        except ValueError as exc:
            raise ApiError(500, "internal_error", f"{directory / LAYOUT_FILE} is unreadable") from exc
        with self._lock:
            self._part_sizes[directory] = int(layout["partSize"])
        return int(layout["partSize"])

    def begin(self, directory: Path, number: int) -> PartWrite:
        """Start writing part ``number``: lock shared, check, drop its old marker."""
        offset = (number - 1) * self.part_size(directory)
        data = directory / DATA_FILE
        try:
            fd = os.open(data, os.O_WRONLY)
        except (FileNotFoundError, NotADirectoryError):
            raise upload_missing() from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ApiError(409, "upload_completing",
                               "this multipart upload is being completed; parts can no longer "
                               "be sent") from None
            try:
                if os.stat(data).st_ino != os.fstat(fd).st_ino:
                    raise upload_missing()
            except FileNotFoundError:
                raise upload_missing() from None
            for name in os.listdir(directory):
                if name.startswith(f"{number:05d}.") and MARKER.fullmatch(name):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(directory / name)  # before any byte of the range changes
        except BaseException:
            os.close(fd)
            raise
        return PartWrite(directory, number, fd, offset)

    def done(self, part: PartWrite) -> str:
        """The part's bytes are all written: make its marker, return its etag."""
        etag = secrets.token_hex(8)
        name = f"{part.number:05d}.{etag}.{part.size}"
        try:
            (part.directory / name).touch(exist_ok=False)
        except (FileNotFoundError, NotADirectoryError):
            raise upload_missing() from None
        finally:
            part.close()
        self._assembly(part.directory).landed(part.number, name)
        return etag

    def _assembly(self, directory: Path) -> PartAssembly:
        with self._lock:
            assembly = self._assemblies.get(directory)
        if assembly is not None:
            return assembly
        part_size = self.part_size(directory)
        with self._lock:
            assembly = self._assemblies.get(directory)
            if assembly is None:  # first part, or first since a gateway restart
                assembly = self._assemblies[directory] = PartAssembly(directory, part_size)
                for number, (name, _size) in scan_markers(directory).items():
                    assembly.landed(number, name)
            return assembly

    def complete(self, directory: Path, names: list[str], target: Path, size: int, sha1: str
                 ) -> tuple[str, int]:
        """Verify the parts ``names`` and move ``data`` to ``target`` iff they have ``size``
        and ``sha1``; returns what they have. The directory is removed unless the caller
        may retry (errors with status 409 or 503). FileNotFoundError: nothing uploaded."""
        part_size = self.part_size(directory)
        with self._lock:
            assembly = self._assemblies.pop(directory, None)
        assembly = assembly or PartAssembly(directory, part_size)
        retry = False
        fd = os.open(directory / DATA_FILE, os.O_RDONLY)
        try:
            _lock_exclusive(fd)
            markers = scan_markers(directory)
            if [markers.get(n, ("", 0))[0] for n in range(1, len(names) + 1)] != names:
                retry = True
                raise bad_request("multipart_incomplete",
                                  "parts were sent again while the upload was being completed; "
                                  "list the parts and complete again")
            got_sha1, got_size = assembly.finish(names)
            on_disk = os.fstat(fd).st_size
            if on_disk != got_size:
                return got_sha1, on_disk
            if (got_sha1, got_size) == (sha1, size):
                target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(directory / DATA_FILE, target)
            return got_sha1, got_size
        except ApiError as exc:
            retry = retry or exc.status in (409, 503)
            raise
        finally:
            os.close(fd)  # releases the lock; waiting part PUTs then find no data file
            assembly.close()
            if not retry:
                self.drop(directory)
                shutil.rmtree(directory, ignore_errors=True)

    def drop(self, directory: Path) -> None:
        """Forget an upload (aborted, completed, swept)."""
        with self._lock:
            assembly = self._assemblies.pop(directory, None)
            self._part_sizes.pop(directory, None)
        if assembly is not None:
            assembly.close()

    def drop_missing(self) -> None:
        """Forget uploads whose directory is gone (swept, or removed by hand)."""
        with self._lock:
            known = list(self._assemblies) + list(self._part_sizes)
        for directory in known:
            if not directory.is_dir():
                self.drop(directory)


def _lock_exclusive(fd: int) -> None:
    """Wait (bounded) until no part PUT holds the shared lock, then hold the exclusive one."""
    deadline = time.monotonic() + LOCK_WAIT_SEC
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise ApiError(503, "storage_busy",
                               "parts of this upload are still being received; complete it once "
                               "every part PUT has answered") from None
            time.sleep(0.05)
