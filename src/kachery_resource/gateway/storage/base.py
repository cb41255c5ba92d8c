"""What every storage backend offers the gateway."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

from ..problems import ApiError


@dataclass(frozen=True)
class PartInfo:
    """One received part of a multipart upload."""

    number: int
    size: int
    etag: str


@dataclass(frozen=True)
class UrlContext:
    """What a backend needs to hand out URLs: the gateway's public base URL and the zone."""

    base_url: str
    zone: str


def content_mismatch(declared_sha1: str, declared_size: int, sha1: str | None, size: int) -> ApiError:
    """The 400 answered when the uploaded bytes are not what the client declared."""
    got = f"size {size}" + (f", sha1 {sha1}" if sha1 else "")
    return ApiError(
        400,
        "content_mismatch",
        f"the uploaded bytes do not match the declared file (declared size {declared_size}, "
        f"sha1 {declared_sha1}; received {got}); the staged upload was deleted. "
        "Upload the file again; if it keeps failing the file may be changing while it is uploaded.",
    )


def size_mismatch(key: str, declared: int, size: int) -> ApiError:
    """The 400 when an object under a content key is not of the declared size: the object
    stays (a content key only ever holds verified bytes), the declaration is wrong."""
    return ApiError(400, "content_mismatch",
                    f"the object {key!r} has {size} bytes, not the declared {declared}; "
                    "declare the file's size and sha1 as they are")


def nothing_uploaded(key: str) -> ApiError:
    """The 400 answered when finalize finds no uploaded object at the staging key."""
    return ApiError(
        400,
        "upload_missing",
        f"nothing was uploaded to {key!r} (or it was already finalized or cleaned up); "
        "PUT the file to signedUploadUrl before finalizeFileUpload",
    )


class Storage(ABC):
    """A place for objects named by keys: a local directory or an S3 bucket.

    Keys given to these methods have already been validated (keys.ensure_safe_key).
    """

    kind: str
    """``local`` or ``s3``: shown in /api/info."""

    description: str
    """Where the bytes are, for logs and /api/info (no secrets)."""

    accepts_chunked_put: bool = True
    """False where presigned PUTs may refuse chunked bodies (S3): empty files are then
    stored by the gateway itself at initiate, since their sha1 needs no upload."""

    verifies_sha1: bool = False
    """True where the store itself refuses a PUT whose body does not hash to the sha1 of its
    signed ``x-amz-checksum-sha1`` header, leaving nothing under the key (S3 stores that
    passed :meth:`probe`). Clients that can send headers then upload straight to the
    content key (:meth:`checked_upload_url`) and finalize only has to :meth:`confirm`.
    The local directory hashes what it receives instead."""

    not_verified_because: str = ""
    """After :meth:`probe`: why the store is not trusted to verify sha1 checksums."""

    @abstractmethod
    async def size_of(self, key: str) -> int | None:
        """The size of object ``key``, or None if it does not exist."""

    @abstractmethod
    async def read_small(self, key: str, limit: int = 1 << 20) -> bytes | None:
        """The bytes of a small object (a JSON record), or None if it does not exist."""

    @abstractmethod
    async def write_small(self, key: str, data: bytes) -> None:
        """Write a small object atomically (readers see the old or the new bytes)."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Delete ``key`` if it exists."""

    @abstractmethod
    async def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` + '/' (for small listings such as client records)."""

    @abstractmethod
    async def list_modified(self, prefix: str) -> dict[str, float]:
        """Every key under ``prefix`` + '/' with its last-modified time (Unix seconds)."""

    @abstractmethod
    async def list_folders(self, prefix: str, after: str = "", limit: int = 1000) -> list[str]:
        """The names of the folders right under ``prefix`` + '/' (S3: a delimiter listing),
        in order, those after ``after`` only, at most ``limit`` of them."""

    @abstractmethod
    def read_blocks(self, key: str, block: int = 1 << 20) -> Iterator[bytes]:
        """The bytes of object ``key`` in blocks of at most ``block`` bytes, streamed:
        blocking, so iterate it in a worker thread. FileNotFoundError if there is none."""

    @abstractmethod
    def download_url(self, ctx: UrlContext, key: str, ttl_sec: int) -> str:
        """A plain GET URL for ``key``, valid for ``ttl_sec`` seconds."""

    @abstractmethod
    def upload_url(self, ctx: UrlContext, key: str, ttl_sec: int, max_size: int) -> str:
        """A URL accepting one raw-body PUT to ``key`` (answering 200), for ``ttl_sec`` s."""

    def checked_upload_url(self, ctx: UrlContext, key: str, sha1: str, size: int,
                           ttl_sec: int) -> tuple[str, dict[str, str]]:
        """A URL accepting one PUT to ``key`` that carries exactly the returned headers, and
        that the store refuses unless the body has ``size`` bytes hashing to ``sha1``; only
        where :attr:`verifies_sha1`."""
        raise NotImplementedError(f"{self.description} does not verify sha1 checksums")

    async def confirm(self, content: str, size: int, sha1: str) -> None:
        """Finalize of an upload that went straight to ``content`` (:meth:`checked_upload_url`,
        which may have been handed out by another gateway instance):
        :func:`nothing_uploaded` if there is no object, :func:`size_mismatch` if it is not
        of the declared size. It makes nothing readable, so any storage can answer it."""
        found = await self.size_of(content)
        if found is None:
            raise nothing_uploaded(content)
        if found != size:
            raise size_mismatch(content, size, found)

    @abstractmethod
    async def promote(self, staging: str, content: str, size: int, sha1: str) -> None:
        """Make the staged upload visible under ``content`` iff its size and sha1 match.

        On a mismatch the staged object is deleted and a 400 is raised
        (:func:`content_mismatch`); when nothing was staged, :func:`nothing_uploaded`.
        """

    @abstractmethod
    async def put_verified_empty(self, content: str) -> None:
        """Store the empty object under ``content`` (its sha1 is known without an upload)."""

    @abstractmethod
    async def cleanup(self, prefix: str, max_age_sec: float) -> int:
        """Delete objects under ``prefix`` older than ``max_age_sec``; returns how many."""

    # Multipart uploads: ``key`` is the upload's objectKey; parts are numbered from 1.

    @abstractmethod
    async def mp_create(self, key: str) -> str:
        """Start a multipart upload at ``key``; returns the backend's upload id (may be '')."""

    async def mp_prepare(self, key: str, backend_id: str, size: int, part_size: int) -> None:  # noqa: B027
        """Optional: learn the upload's size and part size, right after :meth:`mp_create`
        (the local directory lays out the file its parts are written into)."""

    @abstractmethod
    def mp_part_url(self, ctx: UrlContext, key: str, backend_id: str, number: int, ttl_sec: int,
                    max_size: int) -> str:
        """A URL accepting one PUT of part ``number`` (answering 200 with an ETag header)."""

    @abstractmethod
    async def mp_parts(self, key: str, backend_id: str) -> dict[int, PartInfo]:
        """The parts received so far (the latest one of each number)."""

    @abstractmethod
    async def mp_complete(self, key: str, backend_id: str, parts: list[PartInfo], content: str,
                          size: int, sha1: str) -> None:
        """Assemble ``parts`` (in order) and make them visible under ``content`` iff the
        whole file has ``size`` and ``sha1``; otherwise delete everything and raise
        :func:`content_mismatch`. An ApiError with status 409 or 503 leaves the upload
        as it was (complete again later)."""

    @abstractmethod
    async def mp_abort(self, key: str, backend_id: str) -> None:
        """Drop the upload and every part of it."""

    @abstractmethod
    async def mp_cleanup(self, root: str, max_age_sec: float) -> int:
        """Drop multipart uploads under ``root`` idle (no part, no record written) for
        ``max_age_sec``, with their parts and records; returns how many."""

    async def check(self, prefix: str) -> None:  # noqa: B027 - optional hook
        """Raise ConfigError unless the storage is usable under ``prefix`` (S3: the bucket is
        reachable with the configured credentials); called once before serving."""

    async def probe(self, scratch: str) -> None:  # noqa: B027 - optional hook
        """Find out whether the store verifies sha1 checksums (sets :attr:`verifies_sha1`),
        writing only under ``scratch``; never raises. Called before serving; once per
        storage is enough (later calls may do nothing)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (clients, threads)."""
