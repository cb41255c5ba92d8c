"""Stream a bucket object into the local store, checking its sha1 before it is cached."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import requests

from ..errors import GatewayError
from ..store import LocalStore
from .progress import Progress

CHUNK_SIZE = 1024 * 1024


def download_verified(
    session: requests.Session,
    url: str,
    sha1: str,
    store: LocalStore,
    progress: Progress,
    size: int | None = None,
    timeout: float = 60,
) -> Path:
    """GET ``url`` into ``store`` under ``sha1``; IntegrityError if the bytes differ."""
    try:
        resp = session.get(url, stream=True, timeout=(10, timeout))
    except requests.RequestException as exc:
        raise GatewayError(f"cannot download sha1://{sha1} from the bucket: {exc}") from exc
    with resp:
        if resp.status_code != 200:
            raise GatewayError(
                f"the bucket answered HTTP {resp.status_code} for sha1://{sha1} "
                "although the gateway listed it; try again, or tell the zone admin",
                status=resp.status_code,
            )
        length = resp.headers.get("Content-Length")
        progress.download_started(int(length) if length and length.isdigit() else size)
        return store.add_verified(sha1, _chunks(resp, sha1, progress))


def _chunks(resp: requests.Response, sha1: str, progress: Progress) -> Iterator[bytes]:
    try:
        for chunk in resp.iter_content(chunk_size=CHUNK_SIZE):
            if chunk:
                progress.downloaded(len(chunk))
                yield chunk
    except requests.RequestException as exc:
        raise GatewayError(f"the download of sha1://{sha1} was interrupted: {exc}") from exc
