"""``kachery-resource link PATH...``: link files and whole trees into the local store.

Each file gets the ``linked_files`` record kachery-cloud reads too. Hashing runs in a
thread pool (hashlib releases the GIL). What was linked is remembered in a small SQLite
index (``$KACHERY_CLOUD_DIR/kachery-resource/link-index.sqlite``: path, size, mtime,
sha1), so a re-run skips every file whose path, size and mtime are unchanged and whose
record is still there; an unchanged tree of 100,000 files re-runs in seconds.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..errors import StoreError
from ..store import LocalStore
from ..uri import sha1_uri

INDEX_NAME = "link-index.sqlite"


@dataclass(frozen=True)
class LinkedFile:
    path: str
    size: int
    mtime: float
    sha1: str
    unchanged: bool  # True: skipped thanks to the index


@dataclass
class LinkReport:
    files: list[LinkedFile]
    errors: list[tuple[str, str]]
    seconds: float

    @property
    def hashed(self) -> int:
        return sum(1 for f in self.files if not f.unchanged)

    def summary(self) -> str:
        """``linked 3 files, 1.2 GiB (1 hashed: 3.0 MiB, 2 unchanged, 0 failed) in 0.4 s``."""
        total = sum(f.size for f in self.files)
        hashed = sum(f.size for f in self.files if not f.unchanged)
        return (f"linked {plural(len(self.files), 'file')}, {mib(total)} ({self.hashed} hashed: "
                f"{mib(hashed)}, {len(self.files) - self.hashed} unchanged, "
                f"{len(self.errors)} failed) in {self.seconds:.1f} s")


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def mib(n: float) -> str:
    """Bytes in the binary unit family of every progress display (KiB, MiB, GiB)."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


class LinkIndex:
    """What this tool linked before: path → (size, mtime, sha1)."""

    def __init__(self, store_root: Path) -> None:
        folder = store_root / "kachery-resource"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / INDEX_NAME
        self._db = sqlite3.connect(self.path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS links (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
            "mtime REAL NOT NULL, sha1 TEXT NOT NULL)"
        )

    def load(self) -> dict[str, tuple[int, float, str]]:
        """Every entry at once (one query; far faster than a lookup per file)."""
        rows = self._db.execute("SELECT path, size, mtime, sha1 FROM links")
        return {str(p): (int(size), float(mtime), str(sha1)) for p, size, mtime, sha1 in rows}

    def put(self, path: str, size: int, mtime: float, sha1: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO links (path, size, mtime, sha1) VALUES (?, ?, ?, ?)",
            (path, size, mtime, sha1),
        )

    def commit(self) -> None:
        self._db.commit()

    def forget(self, paths: list[str]) -> None:
        self._db.executemany("DELETE FROM links WHERE path = ?", [(p,) for p in paths])

    def close(self) -> None:
        self._db.commit()
        self._db.close()


def iter_files(paths: list[Path]) -> Iterator[tuple[str, os.stat_result]]:
    """Every regular file under ``paths`` (absolute path, stat), in a stable order."""
    for given in paths:
        top = os.path.abspath(given)
        if os.path.isdir(top):
            for root, dirs, names in os.walk(top):
                dirs.sort()
                for name in sorted(names):
                    full = os.path.join(root, name)
                    try:
                        st = os.stat(full)
                    except OSError:
                        continue
                    if _is_regular(st):
                        yield full, st
        else:
            try:
                st = os.stat(top)
            except OSError as exc:
                raise StoreError(f"cannot link {given}: {exc.strerror or exc}") from exc
            if not _is_regular(st):
                raise StoreError(f"cannot link {given}: not a regular file or directory")
            yield top, st


def _is_regular(st: os.stat_result) -> bool:
    import stat as stat_mod

    return stat_mod.S_ISREG(st.st_mode)


def link_paths(
    paths: list[Path],
    store: LocalStore,
    *,
    workers: int | None = None,
    on_file: Callable[[LinkedFile], None] | None = None,
    on_total: Callable[[int, int], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> LinkReport:
    """Link every file under ``paths``; return what was linked and what failed.

    ``on_total`` is told the files and the bytes to hash once the tree is walked;
    ``on_bytes`` the bytes hashed as they are (from the hashing threads)."""
    t0 = time.monotonic()
    index = LinkIndex(store.root)
    files: list[LinkedFile] = []
    errors: list[tuple[str, str]] = []
    todo: list[tuple[str, os.stat_result]] = []
    records = os.path.join(store.root, "linked_files", "sha1")
    try:
        known_paths = index.load()
        for path, st in iter_files(paths):
            known = known_paths.get(path)
            if (known is not None and known[0] == st.st_size and known[1] == st.st_mtime
                    and _record_exists(records, known[2])):
                item = LinkedFile(path, st.st_size, st.st_mtime, known[2], unchanged=True)
                files.append(item)
                if on_file:
                    on_file(item)
            else:
                todo.append((path, st))
        if on_total:
            on_total(len(files) + len(todo), sum(st.st_size for _, st in todo))
        with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 2) * 2)) as pool:
            futures: list[tuple[str, Future[LinkedFile]]] = [
                (p, pool.submit(_link_one, store, p, on_bytes)) for p, _ in todo
            ]
            for n, (path, fut) in enumerate(futures, 1):
                try:
                    item = fut.result()
                except (OSError, StoreError) as exc:
                    errors.append((path, getattr(exc, "strerror", None) or str(exc)))
                    continue
                index.put(item.path, item.size, item.mtime, item.sha1)
                files.append(item)
                if on_file:
                    on_file(item)
                if n % 1000 == 0:
                    index.commit()
    finally:
        index.close()
    return LinkReport(files, errors, time.monotonic() - t0)


def _record_exists(records: str, sha1: str) -> bool:
    return os.path.exists(f"{records}/{sha1[0:2]}/{sha1[2:4]}/{sha1[4:6]}/{sha1}")


def _link_one(store: LocalStore, path: str,
              on_bytes: Callable[[int], None] | None = None) -> LinkedFile:
    before = os.stat(path)
    sha1 = store.compute_sha1(path, on_bytes)
    after = os.stat(path)
    if (before.st_size, before.st_mtime) != (after.st_size, after.st_mtime):
        raise StoreError(f"{path} changed while it was being hashed; link it again")
    store.link(path, sha1)
    return LinkedFile(path, after.st_size, after.st_mtime, sha1, unchanged=False)


def write_manifest(files: list[LinkedFile], out: TextIO, fmt: str,
                   to_uri: Callable[[str], str] = sha1_uri) -> None:
    """``path<TAB>URI`` lines (tsv) or ``{"path","uri","size"}`` objects (jsonl); ``to_uri``
    writes a sha1 as a URI (``sha1://…`` by default)."""
    for item in sorted(files, key=lambda f: f.path):
        if fmt == "jsonl":
            out.write(json.dumps({"path": item.path, "uri": to_uri(item.sha1),
                                  "size": item.size}) + "\n")
        else:
            out.write(f"{item.path}\t{to_uri(item.sha1)}\n")


def link_with_progress(paths: list[Path], store: LocalStore, workers: int | None) -> LinkReport:
    """:func:`link_paths` with progress on stderr when it is a terminal: files linked and
    bytes hashed (MiB/GiB), shown from the start and refreshed 10 times a second."""
    if not sys.stderr.isatty():
        return link_paths(paths, store, workers=workers)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  DownloadColumn(binary_units=True), TransferSpeedColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True, refresh_per_second=10) as bar:
        files = bar.add_task("files", total=None)
        hashed = bar.add_task("hashed", total=None)

        def totals(n: int, nbytes: int) -> None:
            bar.update(files, total=n)
            bar.update(hashed, total=nbytes)

        return link_paths(
            paths, store, workers=workers,
            on_file=lambda _f: bar.advance(files),
            on_total=totals,
            on_bytes=lambda n: bar.advance(hashed, n),
        )


def _under(path: str, tops: list[str]) -> bool:
    return any(path == top or path.startswith(top.rstrip("/") + "/") for top in tops)


def unlink_paths(paths: list[Path], store: LocalStore) -> dict[str, int]:
    """Remove the ``linked_files`` records of every file at or under ``paths`` (which need
    not exist any more) and their index rows; the count removed per path given."""
    tops = [os.path.abspath(p) for p in paths]
    counts = dict.fromkeys(tops, 0)
    gone: list[str] = []
    for folder, _dirs, names in os.walk(store.root / "linked_files" / "sha1"):
        for name in names:
            record_path = os.path.join(folder, name)
            try:
                with open(record_path, encoding="utf-8") as f:
                    linked = str(json.load(f).get("path", ""))
            except (OSError, ValueError, AttributeError):
                continue
            for top in tops:
                if _under(linked, [top]):
                    os.unlink(record_path)
                    counts[top] += 1
                    gone.append(linked)
                    break
    index = LinkIndex(store.root)
    try:
        stale = [p for p in index.load() if _under(p, tops)]
        index.forget(stale)
    finally:
        index.close()
    return counts
