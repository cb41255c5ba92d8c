"""What a running ``share`` publishes about itself, for ``kachery-resource status``.

``share`` keeps ``.kachery-resource/share-state.json`` beside its config up to date: its
pid, when it started, the proxy and whether it is connected (since when, or why not),
files served, uploads in flight and the last failures. The file is replaced atomically
(written beside, then renamed), at once on connection changes and within
:data:`PUBLISH_SEC` otherwise; it is removed when ``share`` stops. A file whose pid is not
alive is left over from a crash: ``status`` reports ``share`` as not running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

STATE_DIR_NAME = ".kachery-resource"
STATE_FILE_NAME = "share-state.json"
PUBLISH_SEC = 1.0
RECENT_FAILURES = 10


def state_dir_for(config_path: Path) -> Path:
    """The daemon's own state (upload journal, this file): ``.kachery-resource/`` beside
    the config."""
    return config_path.resolve().parent / STATE_DIR_NAME


def state_file(state_dir: Path) -> Path:
    return state_dir / STATE_FILE_NAME


class ShareState:
    """The live state of one ``share`` process, written to its state file."""

    def __init__(self, state_dir: Path | None, **facts: Any) -> None:
        self.path = None if state_dir is None else state_file(state_dir)  # None: not written
        self.facts = {"pid": os.getpid(), "startedAt": time.time(), **facts}
        self.connected = False
        self.connected_since: float | None = None
        self.last_problem = "not connected yet"
        self.files_served = 0
        self.bytes_uploaded = 0
        self.failures: deque[dict[str, Any]] = deque(maxlen=RECENT_FAILURES)
        self.in_flight: Callable[[], int] = lambda: 0
        self._written: dict[str, Any] | None = None

    # -- events ----------------------------------------------------------------------
    def connection(self, connected: bool, why: str) -> None:
        """The proxy connection came up, or went down (``why``)."""
        if connected and not self.connected:
            self.connected_since = time.time()
        self.connected = connected
        if not connected:
            self.connected_since = None
            self.last_problem = why
        self.publish()

    def served(self, uploaded_bytes: int) -> None:
        self.files_served += 1
        self.bytes_uploaded += uploaded_bytes

    def failed(self, uri: str, error: str) -> None:
        self.failures.append({"at": time.time(), "uri": uri, "error": error})

    # -- the file --------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {**self.facts, "connected": self.connected,
                "connectedSince": self.connected_since,
                "problem": None if self.connected else self.last_problem,
                "filesServed": self.files_served, "bytesUploaded": self.bytes_uploaded,
                "uploadsInFlight": self.in_flight(), "recentFailures": list(self.failures)}

    def publish(self) -> None:
        """Write the state now if it changed (atomically: readers see old or new)."""
        data = self.snapshot()
        if self.path is None or data == self._written:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)
        self._written = data

    async def publish_forever(self) -> None:
        while True:
            with contextlib.suppress(OSError):
                self.publish()
            await asyncio.sleep(PUBLISH_SEC)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            if self.path and read_state(self.path.parent).get("pid") == os.getpid():
                self.path.unlink()


def read_state(state_dir: Path) -> dict[str, Any]:
    """The published state ({} when there is none or it cannot be read)."""
    try:
        data = json.loads(state_file(state_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def live_state(state_dir: Path) -> dict[str, Any]:
    """The state of a ``share`` that is running now ({} when none is)."""
    data = read_state(state_dir)
    return data if pid_alive(data.get("pid")) else {}
