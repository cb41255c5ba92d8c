"""The multipart upload journal: a small SQLite file that lets an upload resume after a crash.

One row per multipart upload in progress (which file, as it was when the upload started,
and which gateway upload it feeds), one row per part the store has acknowledged, with
the part's ETag. Every change is its own transaction in WAL mode with ``synchronous=FULL``,
so ``kill -9`` (or a power cut) at any moment leaves either the state before or the state
after a part, never a broken file. Schema (``PRAGMA user_version = 1``)::

    uploads(gateway, zone, sha1, path, size, mtime_ns, object_key, part_size, num_parts,
            created)                        PRIMARY KEY (gateway, zone, sha1)
    parts(object_key, number, size, etag)   PRIMARY KEY (object_key, number)

The journal only remembers; the gateway (``listMultipartParts``) stays the authority
on which parts it holds. Methods block briefly (one fsync): call them via
``asyncio.to_thread`` from the event loop.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError

JOURNAL_FILE_NAME = "upload-journal.sqlite"
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    gateway TEXT NOT NULL, zone TEXT NOT NULL, sha1 TEXT NOT NULL,
    path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    object_key TEXT NOT NULL, part_size INTEGER NOT NULL, num_parts INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (gateway, zone, sha1)
);
CREATE TABLE IF NOT EXISTS parts (
    object_key TEXT NOT NULL, number INTEGER NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
    PRIMARY KEY (object_key, number)
);
"""


@dataclass(frozen=True)
class JournalEntry:
    """One multipart upload in progress, and the file it was started from."""

    gateway: str
    zone: str
    sha1: str
    path: str
    size: int
    mtime_ns: int
    object_key: str
    part_size: int
    num_parts: int
    created: float = 0.0

    def part_size_of(self, number: int) -> int:
        """The exact size of part ``number`` (every part but the last is ``part_size``)."""
        if number < self.num_parts:
            return self.part_size
        return self.size - self.part_size * (self.num_parts - 1)


@dataclass(frozen=True)
class JournalPart:
    number: int
    size: int
    etag: str


class UploadJournal:
    """The journal file at ``path`` (created with its directory if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                       timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the upload journal {self.path}: {exc}; check that its directory "
                "is writable (or delete a damaged file: only resumable progress is lost)"
            ) from exc

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> UploadJournal:
        return cls(Path(state_dir) / JOURNAL_FILE_NAME)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def find(self, gateway: str, zone: str, sha1: str) -> JournalEntry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT gateway, zone, sha1, path, size, mtime_ns, object_key, part_size, "
                "num_parts, created FROM uploads WHERE gateway=? AND zone=? AND sha1=?",
                (gateway, zone, sha1)).fetchone()
        return None if row is None else JournalEntry(*row)

    def entries(self) -> list[JournalEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT gateway, zone, sha1, path, size, mtime_ns, object_key, part_size, "
                "num_parts, created FROM uploads ORDER BY created").fetchall()
        return [JournalEntry(*row) for row in rows]

    def start(self, entry: JournalEntry) -> JournalEntry:
        """Record a new upload (replacing any older one of the same hash); returns it stamped."""
        stamped = JournalEntry(**{**entry.__dict__, "created": time.time()})
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._delete(entry.gateway, entry.zone, entry.sha1)
            self._db.execute(
                "INSERT INTO uploads VALUES (?,?,?,?,?,?,?,?,?,?)",
                (stamped.gateway, stamped.zone, stamped.sha1, stamped.path, stamped.size,
                 stamped.mtime_ns, stamped.object_key, stamped.part_size, stamped.num_parts,
                 stamped.created))
        return stamped

    def add_part(self, object_key: str, number: int, size: int, etag: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO parts VALUES (?,?,?,?)",
                             (object_key, number, size, etag))

    def parts(self, object_key: str) -> dict[int, JournalPart]:
        with self._lock:
            rows = self._db.execute("SELECT number, size, etag FROM parts WHERE object_key=?",
                                    (object_key,)).fetchall()
        return {n: JournalPart(n, size, etag) for n, size, etag in rows}

    def remove(self, entry: JournalEntry) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._delete(entry.gateway, entry.zone, entry.sha1)

    def _delete(self, gateway: str, zone: str, sha1: str) -> None:
        self._db.execute(
            "DELETE FROM parts WHERE object_key IN (SELECT object_key FROM uploads "
            "WHERE gateway=? AND zone=? AND sha1=?)", (gateway, zone, sha1))
        self._db.execute("DELETE FROM uploads WHERE gateway=? AND zone=? AND sha1=?",
                         (gateway, zone, sha1))
