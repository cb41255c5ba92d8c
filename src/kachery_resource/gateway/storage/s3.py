"""Storage in an S3-compatible bucket (AWS, R2, Wasabi, SeaweedFS, MinIO) via boto3.

Two ways an upload becomes readable under its content key, both keeping "nothing is ever
readable under a sha1 key unless its bytes hash to that sha1":

- **Store-verified** (clients that send headers, on stores that passed :meth:`S3Storage.probe`,
  see :mod:`.checksum_probe`): the client PUTs straight to the content key through a URL
  presigned with ``x-amz-checksum-sha1`` and the declared Content-Length; the store
  refuses a body with another sha1 (400 BadDigest, nothing stored) or another size
  (403). Finalize only HEADs the object (:meth:`S3Storage.confirm`).
- **Read back** (every other upload): clients PUT to presigned URLs for a staging key;
  finalize streams the staged object back (in a worker thread, in 1 MiB chunks) to hash
  it, and only if size and sha1 match copies it to its content key — conditionally on the
  ETag that was hashed, so bytes re-uploaded to the staging URL in between can never slip
  through — then deletes the staged object (:meth:`S3Storage.promote`).

Every blocking boto3 call runs in ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from ...errors import ConfigError
from ..problems import ApiError
from .base import PartInfo, Storage, UrlContext, content_mismatch, nothing_uploaded, size_mismatch
from .checksum_probe import CHECKSUM_HEADER, ChecksumProbe

HASH_CHUNK = 1024 * 1024
MAX_COPY_OBJECT = 5 * 1024**3
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}

log = logging.getLogger("kachery_resource.gateway")


def is_missing(exc: ClientError) -> bool:
    """Answer whether a boto3 error means 'no such object'."""
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


def sha1_b64(sha1: str) -> str:
    """A hex sha1 as ``x-amz-checksum-sha1`` carries it: base64 of its 20 bytes."""
    return base64.b64encode(bytes.fromhex(sha1)).decode()


def checksum_hex(checksum: str) -> str:
    """An ``x-amz-checksum-sha1`` value as a hex sha1 (as it is if it is not base64)."""
    try:
        return base64.b64decode(checksum, validate=True).hex()
    except ValueError:
        return checksum


def make_client(endpoint_url: str | None, *, attempts: int = 4, connect_timeout: float = 60,
                read_timeout: float = 300) -> Any:
    """A boto3 S3 client; path-style addressing when an endpoint is given (SeaweedFS, MinIO)."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    style = "path" if endpoint_url else "auto"
    config = Config(signature_version="s3v4", s3={"addressing_style": style},
                    retries={"max_attempts": attempts, "mode": "standard"}, max_pool_connections=32,
                    connect_timeout=connect_timeout, read_timeout=read_timeout)
    try:
        return boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name=region,
                                              config=config)
    except ValueError as exc:  # e.g. "Invalid endpoint: …" from $AWS_ENDPOINT_URL
        raise ConfigError(f"cannot use S3 endpoint {endpoint_url!r}: {exc}; give an http(s) URL "
                          "with --s3-endpoint-url, s3EndpointUrl in the config or "
                          "$AWS_ENDPOINT_URL") from None


_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
           "InvalidToken", "ExpiredToken", "TokenRefreshRequired", "403"}
_NO_BUCKET = {"NoSuchBucket", "404"}
_ENDPOINT_HINT = "--s3-endpoint-url, s3EndpointUrl in the config, or $AWS_ENDPOINT_URL"


def access_problem(exc: Exception) -> str:
    """What went wrong in an S3 call, and what to set: for refusing to start."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return (f"no S3 credentials were found ({exc}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or another boto3 credential source)")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code"))
        said = f"{code}: {error['Message']}" if error.get("Message") else code
        if code in _DENIED:
            return (f"access denied ({said}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
                    "(and AWS_SESSION_TOKEN), and that they may list, read and write the bucket")
        if code in _NO_BUCKET:
            return (f"no such bucket ({said}); create it, or correct the bucket in the storage "
                    f"(s3://BUCKET/PREFIX) or the endpoint ({_ENDPOINT_HINT})")
        return f"the endpoint answered {said}; check the bucket, endpoint and credentials"
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        detail = "cannot connect" if isinstance(exc, EndpointConnectionError) else str(exc)
        return (f"the endpoint is unreachable ({detail}); check that it is running and that its "
                f"URL is right ({_ENDPOINT_HINT})")
    return f"{type(exc).__name__}: {exc}"


class S3Storage(Storage):
    """Objects in ``bucket``; keys are object keys."""

    kind = "s3"
    accepts_chunked_put = False

    def __init__(self, bucket: str, endpoint_url: str | None = None, client: Any = None) -> None:
        if not bucket:
            raise ConfigError("an S3 storage needs a bucket: s3://BUCKET[/PREFIX]")
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.client = client if client is not None else make_client(endpoint_url)
        self.description = f"s3://{bucket}" + (f" at {endpoint_url}" if endpoint_url else "")
        self._probed = False

    async def check(self, prefix: str) -> None:
        """List at most one key under ``prefix`` (fails fast: one retry, 10 s to connect)."""
        probe = make_client(self.endpoint_url, attempts=2, connect_timeout=10, read_timeout=30)
        try:
            await asyncio.to_thread(probe.list_objects_v2, Bucket=self.bucket, MaxKeys=1,
                                    Prefix=f"{prefix}/" if prefix else "")
        except (ClientError, BotoCoreError) as exc:
            where = f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"
            endpoint = self.endpoint_url or "AWS (no --s3-endpoint-url)"
            raise ConfigError(f"cannot use the S3 storage {where} at {endpoint}: "
                              f"{access_problem(exc)}") from None
        finally:
            probe.close()

    async def probe(self, scratch: str) -> None:
        """Set :attr:`verifies_sha1` once, from a :class:`ChecksumProbe` under ``scratch``;
        any surprise or error leaves it False. Logs one line saying which."""
        if self._probed:
            return
        self._probed = True
        client = make_client(self.endpoint_url, attempts=2, connect_timeout=10, read_timeout=30)
        probe = ChecksumProbe(self.bucket, self._checked_put, client, scratch)
        try:
            surprise = await asyncio.to_thread(probe.run)
        except Exception as exc:  # whatever it is, the read-back way stays safe
            self.not_verified_because = f"the probe failed: {type(exc).__name__}: {exc}"
            log.warning("%s: could not find out whether the store verifies %s (%s: %s); uploads "
                        "on it are verified by reading them back", self.description,
                        CHECKSUM_HEADER, type(exc).__name__, exc)
            return
        finally:
            client.close()
        self.verifies_sha1 = surprise is None
        self.not_verified_because = surprise or ""
        if surprise is None:
            log.info("%s verifies the sha1 of uploads itself (%s): clients that send it upload "
                     "straight to content keys, without a read-back", self.description,
                     CHECKSUM_HEADER)
        else:
            log.info("%s does not verify %s (%s): uploads on it are verified by reading them "
                     "back", self.description, CHECKSUM_HEADER, surprise)

    def _checked_put(self, key: str, sha1: str, size: int,
                     ttl_sec: int = 300) -> tuple[str, dict[str, str]]:
        checksum = sha1_b64(sha1)
        url = self.client.generate_presigned_url(
            "put_object", ExpiresIn=ttl_sec,
            Params={"Bucket": self.bucket, "Key": key, "ChecksumSHA1": checksum,
                    "ContentLength": size})
        return str(url), {CHECKSUM_HEADER: checksum}

    def checked_upload_url(self, ctx: UrlContext, key: str, sha1: str, size: int,
                           ttl_sec: int) -> tuple[str, dict[str, str]]:
        return self._checked_put(key, sha1, size, ttl_sec)

    async def confirm(self, content: str, size: int, sha1: str) -> None:
        try:
            head = await self._call("head_object", Key=content, ChecksumMode="ENABLED")
        except ClientError as exc:
            if is_missing(exc):
                raise nothing_uploaded(content) from exc
            raise
        stored, got_size = head.get("ChecksumSHA1"), int(head["ContentLength"])
        # "…-N" would be a checksum of parts, not of the object: no evidence either way
        if stored and "-" not in stored and stored != sha1_b64(sha1):
            await self.delete(content)
            raise content_mismatch(sha1, size, checksum_hex(stored), got_size)
        if got_size != size:
            raise size_mismatch(content, size, got_size)

    async def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(getattr(self.client, method), Bucket=self.bucket, **kwargs)
        except ClientError:
            raise
        except BotoCoreError as exc:
            raise ApiError(502, "storage_unavailable",
                           f"the gateway cannot reach its S3 storage ({type(exc).__name__}); "
                           "try again later") from exc

    async def size_of(self, key: str) -> int | None:
        try:
            head = await self._call("head_object", Key=key)
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        return int(head["ContentLength"])

    async def read_small(self, key: str, limit: int = 1 << 20) -> bytes | None:
        try:
            obj = await self._call("get_object", Key=key)
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        body = obj["Body"]
        try:
            return bytes(await asyncio.to_thread(body.read, limit))
        finally:
            body.close()

    async def write_small(self, key: str, data: bytes) -> None:
        await self._call("put_object", Key=key, Body=data)

    async def delete(self, key: str) -> None:
        await self._call("delete_object", Key=key)

    async def _list(self, prefix: str) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            objects: list[dict[str, Any]] = []
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix.rstrip("/") + "/"):
                objects.extend(page.get("Contents", []))
            return objects

        return await asyncio.to_thread(run)

    async def list_keys(self, prefix: str) -> list[str]:
        return sorted(str(o["Key"]) for o in await self._list(prefix))

    async def list_modified(self, prefix: str) -> dict[str, float]:
        return {str(o["Key"]): o["LastModified"].timestamp() for o in await self._list(prefix)}

    async def list_folders(self, prefix: str, after: str = "", limit: int = 1000) -> list[str]:
        head = prefix.rstrip("/") + "/"

        def run() -> list[str]:
            # after "<head><after>0": past every key of folder <after> ("0" follows "/")
            start = {"StartAfter": f"{head}{after}0"} if after else {}
            page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=head, Delimiter="/",
                                               MaxKeys=limit, **start)
            return [str(p["Prefix"])[len(head):].rstrip("/") for p in page.get("CommonPrefixes", [])]

        return sorted(await asyncio.to_thread(run))[:limit]

    def read_blocks(self, key: str, block: int = HASH_CHUNK) -> Iterator[bytes]:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_missing(exc):
                raise FileNotFoundError(key) from exc
            raise
        body = obj["Body"]
        try:
            yield from body.iter_chunks(block)
        finally:
            body.close()

    def download_url(self, ctx: UrlContext, key: str, ttl_sec: int) -> str:
        return str(self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl_sec))

    def upload_url(self, ctx: UrlContext, key: str, ttl_sec: int, max_size: int) -> str:
        return str(self.client.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl_sec))

    def _hash_object(self, key: str) -> tuple[str, int, str]:
        """Stream ``key`` and return (sha1, size, ETag of exactly those bytes)."""
        obj = self.client.get_object(Bucket=self.bucket, Key=key)
        digest = hashlib.sha1()
        size = 0
        body = obj["Body"]
        try:
            for chunk in body.iter_chunks(HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        finally:
            body.close()
        return digest.hexdigest(), size, str(obj["ETag"])

    def _copy_if_match(self, source: str, target: str, etag: str, size: int) -> None:
        copy_source = {"Bucket": self.bucket, "Key": source}
        if size <= MAX_COPY_OBJECT:
            self.client.copy_object(Bucket=self.bucket, Key=target, CopySource=copy_source,
                                    CopySourceIfMatch=etag)
        else:
            self.client.copy(copy_source, self.bucket, target,
                             ExtraArgs={"CopySourceIfMatch": etag})

    async def promote(self, staging: str, content: str, size: int, sha1: str) -> None:
        staged_size = await self.size_of(staging)
        if staged_size is None:
            raise nothing_uploaded(staging)
        if staged_size != size:
            await self.delete(staging)
            raise content_mismatch(sha1, size, None, staged_size)
        try:
            got_sha1, got_size, etag = await asyncio.to_thread(self._hash_object, staging)
        except ClientError as exc:
            if is_missing(exc):
                raise nothing_uploaded(staging) from exc
            raise
        if (got_sha1, got_size) != (sha1, size):
            await self.delete(staging)
            raise content_mismatch(sha1, size, got_sha1, got_size)
        try:
            await asyncio.to_thread(self._copy_if_match, staging, content, etag, size)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            if code in {"PreconditionFailed", "412"}:
                await self.delete(staging)
                raise ApiError(409, "upload_changed",
                               "the staged upload was overwritten while it was being verified; "
                               "it was deleted — upload the file again") from exc
            raise
        await self.delete(staging)

    async def put_verified_empty(self, content: str) -> None:
        await self._call("put_object", Key=content, Body=b"")

    async def mp_create(self, key: str) -> str:
        created = await self._call("create_multipart_upload", Key=key)
        return str(created["UploadId"])

    def mp_part_url(self, ctx: UrlContext, key: str, backend_id: str, number: int, ttl_sec: int,
                    max_size: int) -> str:
        return str(self.client.generate_presigned_url(
            "upload_part", ExpiresIn=ttl_sec,
            Params={"Bucket": self.bucket, "Key": key, "UploadId": backend_id, "PartNumber": number}))

    async def _list_parts(self, key: str, backend_id: str) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            listed: list[dict[str, Any]] = []
            paginator = self.client.get_paginator("list_parts")
            for page in paginator.paginate(Bucket=self.bucket, Key=key, UploadId=backend_id):
                listed.extend(page.get("Parts", []))
            return listed

        try:
            return await asyncio.to_thread(run)
        except ClientError as exc:
            if is_missing(exc):
                return []
            raise

    async def mp_parts(self, key: str, backend_id: str) -> dict[int, PartInfo]:
        listed = await self._list_parts(key, backend_id)
        found: dict[int, PartInfo] = {}
        latest: dict[int, Any] = {}
        for part in listed:  # some stores list a re-sent part twice; the latest wins
            number = int(part["PartNumber"])
            if number not in latest or part["LastModified"] >= latest[number]:
                latest[number] = part["LastModified"]
                found[number] = PartInfo(number, int(part["Size"]), str(part["ETag"]))
        return found

    async def mp_complete(self, key: str, backend_id: str, parts: list[PartInfo], content: str,
                          size: int, sha1: str) -> None:
        listing = {"Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in parts]}
        try:
            await self._call("complete_multipart_upload", Key=key, UploadId=backend_id,
                             MultipartUpload=listing)
        except ClientError as exc:
            if not is_missing(exc):
                raise
        await self.promote(key, content, size, sha1)

    async def mp_abort(self, key: str, backend_id: str) -> None:
        try:
            await self._call("abort_multipart_upload", Key=key, UploadId=backend_id)
        except ClientError as exc:
            if not is_missing(exc):
                raise
        await self.delete(key)

    async def mp_cleanup(self, root: str, max_age_sec: float) -> int:
        cutoff = time.time() - max_age_sec

        def uploads() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root.rstrip("/") + "/"):
                found.extend(page.get("Uploads", []))
            return found

        removed = 0
        live: set[str] = set()
        for upload in await asyncio.to_thread(uploads):
            key, backend_id = str(upload["Key"]), str(upload["UploadId"])
            last = upload["Initiated"].timestamp()
            if last < cutoff:
                parts = await self._list_parts(key, backend_id)
                last = max([last, *(p["LastModified"].timestamp() for p in parts)])
            if last < cutoff:
                await self.mp_abort(key, backend_id)
                await self.delete(key + ".upload.json")
                removed += 1
            else:
                live.add(key)
        for obj in await self._list(root):
            key = str(obj["Key"])
            if key.removesuffix(".upload.json") in live:
                continue
            if obj["LastModified"].timestamp() < cutoff:
                await self.delete(key)
                removed += 1
        return removed

    async def cleanup(self, prefix: str, max_age_sec: float) -> int:
        cutoff = time.time() - max_age_sec
        removed = 0
        for obj in await self._list(prefix):
            if obj["LastModified"].timestamp() < cutoff:
                await self.delete(str(obj["Key"]))
                removed += 1
        return removed

    async def close(self) -> None:
        await asyncio.to_thread(self.client.close)
