"""Storage backends, and opening one from a ``DIR`` or ``s3://BUCKET/PREFIX`` string."""

from __future__ import annotations

from pathlib import Path

from ..keys import ensure_safe_prefix
from .base import Storage, UrlContext
from .local import LocalStorage

__all__ = ["LocalStorage", "Storage", "UrlContext", "open_storage"]


def open_storage(url: str, endpoint_url: str | None = None) -> tuple[Storage, str]:
    """Open the storage ``url`` names; returns it and the key prefix the URL carries.

    ``s3://BUCKET/PREFIX`` is a bucket (S3 endpoint from ``endpoint_url``); anything else,
    including ``file:///path``, is a local directory (the settings already refused other
    ``scheme://`` strings: :func:`..settings.check_storage`).
    """
    if url.startswith("s3://"):
        from .s3 import S3Storage  # boto3 is slow to import; only S3 zones need it

        bucket, _, prefix = url[len("s3://") :].partition("/")
        return S3Storage(bucket, endpoint_url), ensure_safe_prefix(prefix)
    if url.startswith("file://"):
        url = url[len("file://") :]
    return LocalStorage(Path(url)), ""
