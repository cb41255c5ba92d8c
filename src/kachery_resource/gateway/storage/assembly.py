"""Hashing a local-directory multipart upload in order while its parts arrive.

The upload's directory (its objectKey) holds one file ``data`` that becomes the object:
part ``n`` is written straight to its place in it (offset ``(n-1) * partSize``), and
once every byte of it is there an empty marker ``<n:05d>.<etag>.<size>`` is created
(random etag: a re-sent part gets a new marker). A writer removes the part's old marker
*before* it writes a byte, so a range with a marker holds the bytes that marker was made
for, and a marker that disappears means its range may have changed.

A :class:`PartAssembly` — one per upload, in memory — keeps a "frontier": a thread reads
parts 1, 2, 3, … of ``data`` in order as soon as the next marker is there and hashes
them; a part counts only if its marker still exists after it was read. The thread, and
its open ``data`` file, go away after ``IDLE_EXIT_SEC`` with nothing to hash, so uploads
a client abandons cost no file descriptors until the sweep removes them. Completion (under
an exclusive lock that waits out every writer, see ``local.py``) then :meth:`finish`-es
with the authoritative marker names: it rewinds to the first part whose marker is not the
one consumed (re-sent since, or no state at all after a gateway restart — a full pass)
and hashes the rest. So the sha1 returned is always that of exactly the bytes in ``data``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

CHUNK = 16 * 1024 * 1024
IDLE_EXIT_SEC = 30.0
DATA_FILE = "data"


class AssemblyClosed(Exception):
    """The upload was aborted, completed or swept while it was being hashed."""


def part_size_of(name: str) -> int:
    """The size a marker name ``<n>.<etag>.<size>`` carries."""
    return int(name.rsplit(".", 1)[1])


class PartAssembly:
    """The in-order hash of one upload's parts (thread-safe)."""

    def __init__(self, directory: Path, part_size: int) -> None:
        self.directory = directory
        self.part_size = part_size
        self._cond = threading.Condition()
        self._landed: dict[int, str] = {}  # part number -> latest marker name
        self._names: list[str] = []  # markers consumed, in order
        self._marks: list[Any] = [hashlib.sha1()]  # sha1 state before part i+1
        self._digest: Any = hashlib.sha1()
        self._size = 0
        self._invalid_from: int | None = None  # first consumed index that must be redone
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False
        self._fd: int | None = None

    # -- called as parts land (any thread) -------------------------------------------
    def landed(self, number: int, name: str) -> None:
        """Part ``number`` now has marker ``name``; hash in the background."""
        with self._cond:
            if self._closed or self._stopping:
                return
            self._landed[number] = name
            if number <= len(self._names) and self._names[number - 1] != name:
                self._invalidate(number - 1)
            if self._thread is None:
                self._thread = threading.Thread(target=self._background, daemon=True,
                                                name=f"assemble-{self.directory.name[:8]}")
                self._thread.start()
            else:
                self._cond.notify_all()

    @property
    def consumed(self) -> int:
        """How many parts (from part 1, in order) are hashed."""
        with self._cond:
            return len(self._names)

    # -- the background frontier ------------------------------------------------------
    def _background(self) -> None:
        try:
            while True:
                with self._cond:
                    name = self._next_ready()
                    if name is None and not (self._stopping or self._closed):
                        self._cond.wait(IDLE_EXIT_SEC)
                        name = self._next_ready()
                    if name is None:
                        return  # stopping, or idle: landed() starts a new thread when needed
                if not self._consume(name):
                    with self._cond:  # the marker went away (re-sent): wait for the new one
                        number = len(self._names) + 1
                        if self._landed.get(number) == name:
                            del self._landed[number]
        except (OSError, AssemblyClosed):
            return  # finish() redoes whatever is missing
        finally:
            with self._cond:
                self._thread = None
                self._cond.notify_all()
                # an upload left idle (or abandoned until the sweep) holds no open file
                self._close_fd()

    def _next_ready(self) -> str | None:
        """Under the lock: the marker of the next part to hash, or None (stop / nothing)."""
        if self._closed or self._stopping:
            return None
        if self._invalid_from is not None:
            self._rewind(self._invalid_from)
        return self._landed.get(len(self._names) + 1)

    # -- completion -------------------------------------------------------------------
    def finish(self, names: list[str]) -> tuple[str, int]:
        """The (sha1, size) of the parts whose markers are ``names`` (parts 1, 2, … in order).

        Call it while no part can be written (the caller holds the exclusive lock).
        Stops the frontier, keeps what it hashed under the same markers, hashes the rest.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            while self._thread is not None:
                self._cond.wait()
            if self._closed:
                raise AssemblyClosed(f"{self.directory} was dropped")
            keep = 0
            while keep < min(len(names), len(self._names)) and self._names[keep] == names[keep]:
                keep += 1
            if self._invalid_from is not None:
                keep = min(keep, self._invalid_from)
            self._rewind(keep)
        for name in names[keep:]:
            if not self._consume(name):
                raise FileNotFoundError(self.directory / name)
        return self._digest.hexdigest(), self._size

    def close(self) -> None:
        """Drop the state (abort, sweep, completion)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            if self._thread is None:
                self._close_fd()

    # -- internals --------------------------------------------------------------------
    def _invalidate(self, index: int) -> None:
        self._invalid_from = index if self._invalid_from is None else min(index, self._invalid_from)

    def _rewind(self, index: int) -> None:
        """Under the lock: forget parts ``index+1`` … (restore the hash state)."""
        if index < len(self._names):
            del self._names[index:]
            del self._marks[index + 1:]
            self._digest = self._marks[index].copy()
            self._size = index * self.part_size
        self._invalid_from = None

    def _consume(self, name: str) -> bool:
        """Hash the range of the next part (marker ``name``); False if the marker is gone."""
        marker = self.directory / name
        if not marker.exists():
            return False
        fd = self._open_data()
        index = len(self._names)
        offset = index * self.part_size
        length = part_size_of(name)
        digest = self._digest.copy()
        buf = bytearray(min(CHUNK, max(length, 1)))
        view = memoryview(buf)
        done = 0
        while done < length:
            if self._closed:
                raise AssemblyClosed(f"{self.directory} was dropped")
            n = os.preadv(fd, [view[:min(len(buf), length - done)]], offset + done)
            if n == 0:
                return False  # shorter than its marker says: never counts
            digest.update(view[:n])
            done += n
        if not marker.exists():  # a writer started on this range while it was read
            return False
        with self._cond:
            self._names.append(name)
            self._digest = digest
            self._marks.append(digest.copy())
            self._size = offset + length
            latest = self._landed.get(index + 1)
            if not self._stopping and latest is not None and latest != name:
                self._invalidate(index)  # re-sent while it was read: redo on the next turn
        return True

    def _open_data(self) -> int:
        with self._cond:
            if self._fd is None:
                self._fd = os.open(self.directory / DATA_FILE, os.O_RDONLY)
            return self._fd

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
