"""One structured JSON line per request, for the proxy and the gateway (who asked what, the outcome)."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import IO, Any

from .errors import ConfigError


class AccessLog:
    """Writes JSON lines to stderr (``-``), a file (appended), or nowhere (``off``)."""

    def __init__(self, target: str) -> None:
        self._own = False
        self._stream: IO[str] | None
        if target == "off":
            self._stream = None
        elif target == "-":
            self._stream = sys.stderr
        else:
            self._stream = _open(target)
            self._own = True

    @property
    def enabled(self) -> bool:
        return self._stream is not None

    def write(self, **fields: Any) -> None:
        if self._stream is None:
            return
        fields["ts"] = round(time.time(), 3)
        with contextlib.suppress(OSError, ValueError):  # logging must never break serving
            self._stream.write(json.dumps(fields, separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self._own and self._stream is not None:
            self._stream.close()
        self._stream = None


def _open(target: str) -> IO[str]:
    """Open the access log file for appending, or say clearly why it cannot be."""
    try:
        return open(target, "a", buffering=1)
    except OSError as exc:
        parent = Path(target).parent
        if not parent.is_dir():
            why = f"the directory {parent} does not exist; create it, or"
        elif isinstance(exc, IsADirectoryError):
            why = "it is a directory;"
        elif isinstance(exc, PermissionError):
            why = "permission denied (not writable by this user);"
        else:
            why = f"{exc.strerror or exc};"
        raise ConfigError(f"cannot open the access log {target}: {why} set --access-log "
                          "(accessLog in the config) to a writable file, '-' (stderr) or 'off'"
                          ) from None
