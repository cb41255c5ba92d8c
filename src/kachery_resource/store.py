"""The kachery-cloud local store (``$KACHERY_CLOUD_DIR``), byte-compatible with 0.4.10.

A store may look in other stores of the same layout when it lacks a hash (``also``): the
daemon serves a kachery 2.x local store (``$KACHERY_DIR``, default ``~/.kachery``, what
``kachery.store_file_local`` and ``link_file`` write) this way, its copies and linked
files verified like the store's own.

Layout::

    sha1/ab/cd/ef/<sha1>                   full copies
    linked_files/sha1/ab/cd/ef/<sha1>      {"path", "size", "mtime", "sha1"} records
    mutables/@compute_sha1_cache/<sha1 of abs path>   hash cache for files > 1,000,000 bytes
    kachery-resource/chunks/sha1/ab/cd/ef/<sha1>      chunk lists (ours; see chunking.py)
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .chunking import ChunkRecords
from .errors import FileChangedError, IntegrityError, StoreError
from .hashing import sha1_of_file
from .uri import ensure_sha1_hex, sha1_path_parts

HASH_CACHE_MIN_SIZE = 1000 * 1000


def default_store_dir(env: dict[str, str] | None = None) -> Path:
    """``$KACHERY_CLOUD_DIR``, else ``~/.kachery-cloud`` (what kachery-cloud uses)."""
    env = dict(os.environ) if env is None else env
    value = env.get("KACHERY_CLOUD_DIR")
    return Path(value).expanduser() if value else Path.home() / ".kachery-cloud"


@dataclass(frozen=True)
class LocalFile:
    """A file in or linked into the store that holds the bytes of ``sha1``."""

    sha1: str
    path: Path
    size: int
    mtime: float
    linked: bool


class LocalStore:
    """Read and write a kachery-cloud local store rooted at ``root``."""

    def __init__(self, root: Path | str, also: Iterable[Path | str] = ()) -> None:
        self.root = Path(root)
        self._root = str(self.root)
        self._multi_user = os.environ.get("KACHERY_CLOUD_MULTI_USER") == "1"
        self.also = [LocalStore(other) for other in also if Path(other) != self.root]

    @classmethod
    def from_env(cls) -> LocalStore:
        return cls(default_store_dir())

    # -- paths -----------------------------------------------------------------------
    def copy_path(self, sha1: str) -> Path:
        return Path(self._key_path("sha1", sha1))

    def link_record_path(self, sha1: str) -> Path:
        return Path(self._key_path("linked_files/sha1", sha1))

    def _key_path(self, folder: str, sha1: str) -> str:
        # plain strings: this runs for every request a daemon answers
        a, b, c, h = sha1_path_parts(sha1)
        return f"{self._root}/{folder}/{a}/{b}/{c}/{h}"

    def has(self, sha1: str) -> bool:
        """Answer, with at most two stats per store, whether there is a copy or a link record."""
        return (os.path.exists(self._key_path("sha1", sha1))
                or os.path.exists(self._key_path("linked_files/sha1", sha1))
                or any(other.has(sha1) for other in self.also))

    def hash_cache_path(self, path: Path) -> Path:
        key = hashlib.sha1(str(path).encode("utf-8")).hexdigest()
        return self.root / "mutables" / "@compute_sha1_cache" / key

    def _mkdir(self, path: Path) -> None:
        if self._multi_user:
            old = os.umask(0o002)
            try:
                path.mkdir(parents=True, exist_ok=True, mode=0o777)
            finally:
                os.umask(old)
        else:
            path.mkdir(parents=True, exist_ok=True)

    def _write_text_atomic(self, path: Path, text: str) -> None:
        self._mkdir(path.parent)
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(5)}")
        tmp.write_text(text)
        os.replace(tmp, path)

    # -- lookup ----------------------------------------------------------------------
    def find_copy(self, sha1: str) -> Path | None:
        """The store copy of ``sha1`` if there is one."""
        path = self.copy_path(sha1)
        return path if path.is_file() else None

    def read_link_record(self, sha1: str) -> dict[str, object] | None:
        """The linked_files record for ``sha1``, or None if absent or unreadable."""
        try:
            record = json.loads(self.link_record_path(sha1).read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def resolve(self, sha1: str, *, verify_linked: bool = True) -> LocalFile | None:
        """Find the file holding ``sha1``: the store copy, else a still-valid linked file,
        else the same in the ``also`` stores.

        Returns None when none exists. Raises FileChangedError when a linked file exists
        but no longer holds those bytes (size, mtime or, if ``verify_linked`` and only
        mtime moved, the hash differ) and no other store has them; the caller must never
        upload it.
        """
        sha1 = ensure_sha1_hex(sha1)
        changed: FileChangedError | None = None
        for store in (self, *self.also):
            try:
                found = store._resolve_here(sha1, verify_linked)
            except FileChangedError as exc:
                changed = changed or exc
                continue
            if found is not None:
                return found
        if changed is not None:
            raise changed
        return None

    def _resolve_here(self, sha1: str, verify_linked: bool) -> LocalFile | None:
        copy = self.find_copy(sha1)
        if copy is not None:
            st = copy.stat()
            return LocalFile(sha1, copy, st.st_size, st.st_mtime, linked=False)
        record = self.read_link_record(sha1)
        if record is None:
            return None
        path = Path(str(record.get("path", "")))
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise FileChangedError(f"linked file {str(path)!r} for sha1://{sha1} cannot be read: {exc}") from exc
        if st.st_size != record.get("size"):
            raise FileChangedError(
                f"linked file {str(path)!r} changed since it was linked as sha1://{sha1} "
                f"(size {record.get('size')} → {st.st_size}); link it again"
            )
        if st.st_mtime != record.get("mtime"):
            if not verify_linked:
                raise FileChangedError(
                    f"linked file {str(path)!r} was modified since it was linked as sha1://{sha1}; link it again"
                )
            actual, _ = sha1_of_file(path)
            if actual != sha1:
                raise FileChangedError(
                    f"linked file {str(path)!r} no longer has sha1 {sha1} (now {actual}); link it again"
                )
            self._write_link_record(sha1, path, st.st_size, st.st_mtime)
        return LocalFile(sha1, path, st.st_size, st.st_mtime, linked=True)

    # -- hashing with the shared cache ---------------------------------------------
    def compute_sha1(self, path: Path | str,
                     progress: Callable[[int], None] | None = None) -> str:
        """sha1 of a file, using and filling kachery-cloud's cache for files > 1 MB;
        ``progress`` is told the bytes hashed as they are (not for a cache hit)."""
        path = Path(os.path.abspath(path))
        st = path.stat()
        cached = st.st_size > HASH_CACHE_MIN_SIZE
        if cached:
            try:
                rec = json.loads(self.hash_cache_path(path).read_text())
                if rec.get("size") == st.st_size and rec.get("mtime") == st.st_mtime:
                    return ensure_sha1_hex(rec.get("sha1"))
            except (OSError, ValueError, StoreError):
                pass
        # the chunk list in the same read
        chunks = ChunkRecords(self.root).hash_file(path, progress=progress)
        sha1, size = chunks.sha1, chunks.size
        if cached:
            record = {"path": str(path), "size": size, "mtime": st.st_mtime, "sha1": sha1}
            self._write_text_atomic(self.hash_cache_path(path), json.dumps(record))
        return sha1

    # -- writing ---------------------------------------------------------------------
    def _write_link_record(self, sha1: str, path: Path, size: int, mtime: float) -> None:
        record = {"path": str(path), "size": size, "mtime": mtime, "sha1": sha1}
        self._write_text_atomic(self.link_record_path(sha1), json.dumps(record))

    def link(self, path: Path | str, sha1: str | None = None) -> str:
        """Record ``path`` as the holder of its sha1 (like ``kachery_cloud.link_file``)."""
        path = Path(os.path.abspath(path))
        if not path.is_file():
            raise StoreError(f"cannot link {path}: not a regular file")
        st = path.stat()
        sha1 = sha1 or self.compute_sha1(path)
        self._write_link_record(sha1, path, st.st_size, st.st_mtime)
        return sha1

    def store_copy(self, path: Path | str) -> str:
        """Copy ``path`` into the store (like ``kachery_cloud.store_file_local``)."""
        sha1 = self.compute_sha1(path)
        dest = self.copy_path(sha1)
        if not dest.exists():
            self._mkdir(dest.parent)
            tmp = dest.with_name(f"{dest.name}.{secrets.token_hex(5)}")
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        return sha1

    def add_verified(self, sha1: str, chunks: Iterable[bytes]) -> Path:
        """Write ``chunks`` into the store as ``sha1``, only if they hash to it.

        The bytes go to a temporary file beside the destination and are renamed into
        place after the hash is checked, so no reader ever sees a partial or wrong file.
        """
        dest = self.copy_path(sha1)
        self._mkdir(dest.parent)
        tmp = dest.with_name(f"{dest.name}.tmp.{secrets.token_hex(4)}")
        digest = hashlib.sha1()
        try:
            with open(tmp, "wb") as f:
                for chunk in chunks:
                    digest.update(chunk)
                    f.write(chunk)
            if digest.hexdigest() != sha1:
                raise IntegrityError(
                    f"downloaded bytes hash to {digest.hexdigest()}, not {sha1}; nothing was cached"
                )
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest
