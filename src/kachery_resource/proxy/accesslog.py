"""One structured JSON line per request (who asked which resource for which hash)."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import IO, Any


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
            self._stream = open(target, "a", buffering=1)
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
