"""``load_file``, ``stream_file`` and ``request_file``: local store → gateway → resource.

Every download is sha1-checked before it is cached (see :mod:`.download`); the wait for
the resource's upload is in :mod:`.wait`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import threading
from contextlib import closing, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

from ..errors import FileChangedError, FileNotFoundOnResource, StoreError
from ..messages import UploadState
from ..store import LocalStore
from ..uri import FileUri, parse_uri
from .download import CHUNK_SIZE, Sink, download_verified
from .gateway import GatewayClient
from .progress import LineProgress, Progress, RichProgress, make_progress
from .resource import ResourceClient
from .settings import ClientSettings
from .wait import Deadline, ask, find_after_upload, wait_until_uploaded

log = logging.getLogger("kachery_resource.client")

#: inner wait per resource request when nobody watches a progress bar (proxy clamps at 25 s)
LONG_WAIT_SEC = 20.0
#: inner wait while progress is shown, so bytesUploaded refreshes often
PROGRESS_WAIT_SEC = 2.0


@dataclass(frozen=True)
class RequestResult:
    """Where a file stands, without downloading it (``kachery-resource request``)."""

    uri: str
    #: "local" (in $KACHERY_CLOUD_DIR), "bucket" (the gateway has it), "resource"
    #: (the daemon answered) or None (nobody was asked: no KACHERY_RESOURCE_URL)
    source: str | None
    #: a fileUpload status: not-found, queued, running, completed, error
    status: str
    size: int | None = None
    bytesUploaded: int | None = None
    error: str | None = None
    path: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k == "source"}


def load_file(
    uri: str,
    dest: str | Path | None = None,
    *,
    timeout: float | None = None,
    progress: bool | Progress | None = None,
    settings: ClientSettings | None = None,
    poll_wait: float | None = None,
) -> str:
    """Return a local path holding the bytes of ``uri``.

    ``uri`` is ``sha1://<40 hex>`` or ``kachery:<zone>:sha1:<40 hex>[:label]``; a zone in
    the URI is used instead of ``KACHERY_ZONE``.

    Looks in the local store, then asks the zone gateway, then (if
    ``KACHERY_RESOURCE_URL`` is set) asks the resource daemon to upload it and waits.
    With ``dest`` the file is also copied there and that path is returned; ``dest`` may
    be an existing directory (the file is named after the URI's label, else its sha1),
    and is checked before anything is downloaded. ``timeout`` (seconds, default none)
    bounds the wait for the resource's upload, riding out a resource that is offline or
    restarting meanwhile; the download that follows is not cut off. ``progress``:
    True/False, a :class:`Progress`, or None for bars only on a terminal.

    Raises FileNotFoundOnResource, ResourceOfflineError, UploadFailedError,
    TimeoutError_, GatewayError, IntegrityError, InvalidUriError, KeysError, ConfigError (a
    malformed KACHERY_RESOURCE_URL), StoreError (``dest`` cannot be written).
    """
    parsed, settings = _parse(uri, settings)
    target = check_dest(dest, parsed)
    path = _fetch(parsed.sha1, settings, Deadline(timeout), progress, poll_wait, None)
    return _deliver(path, target)


def stream_file(
    uri: str,
    write: Sink,
    *,
    timeout: float | None = None,
    progress: bool | Progress | None = False,
    settings: ClientSettings | None = None,
) -> None:
    """Pass the bytes of ``uri`` to ``write`` in order, as they arrive from the bucket.

    The file is cached as :func:`load_file` caches it. The sha1 is checked at the end: on
    a mismatch ``write`` has seen wrong bytes and IntegrityError is raised. An exception
    from ``write`` (e.g. BrokenPipeError) stops the download and propagates; the bytes
    that arrived are kept for the next attempt to resume from.
    """
    parsed, settings = _parse(uri, settings)
    _fetch(parsed.sha1, settings, Deadline(timeout), progress, None, write)


def request_file(
    uri: str, *, wait: float = 1.0, settings: ClientSettings | None = None
) -> RequestResult:
    """Where ``uri`` stands; asks the resource to upload it if it is nowhere yet.

    ``wait``: how long the daemon may hold the request for the upload to complete
    (it answers at once when the outcome is final: completed, not-found, error). With 0
    a daemon may answer ``queued`` before it has even looked for the file.
    Never downloads. Raises ResourceOfflineError, GatewayError, TimeoutError_, ConfigError.
    """
    parsed, settings = _parse(uri, settings)
    sha1 = parsed.sha1
    canonical = f"sha1://{sha1}"
    local = _resolve_local(LocalStore(settings.store_dir), sha1)
    if local is not None:
        return RequestResult(canonical, "local", UploadState.COMPLETED.value,
                             size=local.stat().st_size, path=str(local))
    with requests.Session() as session:
        gateway = GatewayClient(session, settings.gateway_url, settings.zone, settings.keys,
                                api_key=settings.api_key)
        found = gateway.find_file(sha1)
        if found is not None:
            return RequestResult(canonical, "bucket", UploadState.COMPLETED.value, size=found.size)
        if not settings.resource_url:
            return RequestResult(canonical, None, UploadState.NOT_FOUND.value)
        resource = ResourceClient(session, settings.resource_url, settings.zone)
        status = ask(resource, sha1, wait, Deadline(wait + 30), wait_offline=False)
    return RequestResult(canonical, "resource", status.status.value, size=status.size,
                         bytesUploaded=status.bytesUploaded, error=status.error)


def check_dest(dest: str | Path | None, uri: FileUri) -> Path | None:
    """The file ``dest`` names for ``uri``, or StoreError if it cannot be written there.

    An existing directory receives the file under the URI's label (its last part), else
    under the sha1; a path ending in ``/`` must be an existing directory.
    """
    if dest is None:
        return None
    text = os.fspath(dest)
    path = Path(text).expanduser()
    if path.is_dir():
        path = path / _file_name(uri)
    elif text.endswith(("/", os.sep)):
        raise StoreError(f"cannot write to {text}: no such directory; create it first")
    if not path.parent.is_dir():
        raise StoreError(f"cannot write {path}: directory {path.parent} does not exist; create it first")
    if path.is_dir():
        raise StoreError(f"cannot write {path}: it is a directory")
    writable = os.access(path, os.W_OK) if path.exists() else os.access(path.parent, os.W_OK | os.X_OK)
    if not writable:
        raise StoreError(f"cannot write {path}: permission denied")
    return path


def _file_name(uri: FileUri) -> str:
    name = Path(uri.label).name if uri.label else ""
    return name if name not in ("", ".", "..") and "\0" not in name else uri.sha1


# -- steps ----------------------------------------------------------------------------
def _parse(uri: str, settings: ClientSettings | None) -> tuple[FileUri, ClientSettings]:
    """What ``uri`` names and the settings to fetch it with: a zone in the URI wins."""
    parsed = parse_uri(uri)
    settings = settings or ClientSettings.from_env()
    if parsed.zone is not None and parsed.zone != settings.zone:
        settings = dataclasses.replace(settings, zone=parsed.zone)
    return parsed, settings


def _fetch(sha1: str, settings: ClientSettings, deadline: Deadline,
           progress: bool | Progress | None, poll_wait: float | None, sink: Sink | None) -> Path:
    """The store path of ``sha1``, downloaded (through ``sink``) if it is not local."""
    store = LocalStore(settings.store_dir)
    local = _resolve_local(store, sha1)
    if local is not None:
        if sink is not None:
            _replay(local, sink)
        return local
    reporter = make_progress(progress, sha1[:10])
    wait = poll_wait if poll_wait is not None else (
        PROGRESS_WAIT_SEC if isinstance(reporter, RichProgress | LineProgress) else LONG_WAIT_SEC
    )
    with requests.Session() as session, closing(reporter):
        gateway = GatewayClient(session, settings.gateway_url, settings.zone, settings.keys,
                                api_key=settings.api_key)
        found = gateway.find_file(sha1)
        if found is None:
            resource = _resource_or_raise(session, settings, sha1, gateway)
            wait_until_uploaded(resource, sha1, deadline, reporter, wait)
            found = find_after_upload(gateway, resource, sha1)
        return download_verified(session, found.url, sha1, store, reporter, found.size, sink=sink)


def _replay(path: Path, sink: Sink) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            sink(chunk)


def _resolve_local(store: LocalStore, sha1: str) -> Path | None:
    try:
        found = store.resolve(sha1)
    except FileChangedError as exc:
        log.warning("ignoring a stale local link: %s", exc)
        return None
    return None if found is None else found.path


def _deliver(path: Path, dest: Path | None) -> str:
    if dest is None:
        return str(path)
    if dest.resolve() != path.resolve():
        # whole or not at all: a copy beside dest, renamed over it
        partial = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.partial")
        try:
            shutil.copyfile(path, partial)
            os.replace(partial, dest)
        except OSError as exc:
            with suppress(OSError):
                partial.unlink()
            raise StoreError(f"cannot copy the file to {dest}: {exc.strerror or exc}") from exc
    return str(dest)


def _resource_or_raise(
    session: requests.Session, settings: ClientSettings, sha1: str, gateway: GatewayClient
) -> ResourceClient:
    if not settings.resource_url:
        raise FileNotFoundOnResource(
            f"sha1://{sha1} is not in zone {settings.zone!r} at {gateway.url}, and "
            "KACHERY_RESOURCE_URL is not set, so no resource was asked to upload it"
        )
    return ResourceClient(session, settings.resource_url, settings.zone)
