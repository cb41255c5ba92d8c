"""The daemon's log: one line per event on stderr, cheap enough for thousands of requests
a second.

Lines are ``HH:MM:SS LEVEL message``. They go out in batches: at once for a warning or
worse, otherwise within :data:`FLUSH_SEC` (a background thread flushes), and at exit. The
time text is made once per second, and logging skips the caller, thread and process
lookups this format does not show (as the logging HOWTO's "Optimization" section shows).
The per-request line, written for every request, skips the LogRecord too
(:func:`log_request`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import threading
import time
from typing import TextIO

FLUSH_SEC = 0.2
_logger = logging.getLogger("kachery_resource")


class _Clock:
    """``HH:MM:SS`` of a time, formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def text(self, when: float) -> str:
        second = int(when)
        if second != self._second:
            self._second, self._text = second, time.strftime("%H:%M:%S", time.localtime(second))
        return self._text


class _Formatter(logging.Formatter):
    def __init__(self, clock: _Clock) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")
        self._clock = clock

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self._clock.text(record.created)


class _BatchingHandler(logging.StreamHandler[TextIO]):
    """A StreamHandler that flushes on warnings and every :data:`FLUSH_SEC`, not per line."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.clock = _Clock()
        self.setFormatter(_Formatter(self.clock))
        threading.Thread(target=self._flush_forever, name="log-flush", daemon=True).start()

    def write_line(self, level: str, message: str) -> None:
        """Write one line without a LogRecord (for the per-request line)."""
        with contextlib.suppress(OSError, ValueError):  # a broken stderr must not stop serving
            self.stream.write(f"{self.clock.text(time.time())} {level} {message}\n")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + "\n")
            if record.levelno >= logging.WARNING:
                self.flush()
        except Exception:
            self.handleError(record)

    def _flush_forever(self) -> None:
        while True:
            time.sleep(FLUSH_SEC)
            try:
                self.flush()
            except (OSError, ValueError):
                return


_handler: _BatchingHandler | None = None


def log_request(request_id: str, uri: str, size: object, outcome: str, seconds: float) -> None:
    """The line logged for every request the daemon answers."""
    if not _logger.isEnabledFor(logging.INFO):
        return
    message = f"request {request_id} {uri[:80]} size={size} → {outcome} in {seconds * 1000:.0f} ms"
    if _handler is not None and _logger.handlers == [_handler]:
        _handler.write_line("INFO", message)
    else:
        _logger.getChild("daemon").info(message)


def _buffered_stderr() -> TextIO:
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return sys.stderr  # not a real file (e.g. captured by a test runner)
    return open(fd, "w", buffering=64 * 1024, encoding="utf-8", errors="replace", closefd=False)


def setup_logging(verbose: bool) -> None:
    """Log ``kachery_resource`` events to stderr; ``--verbose`` adds debug lines."""
    global _handler
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    _handler = _BatchingHandler(_buffered_stderr())
    _logger.handlers[:] = [_handler]
    _logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    _logger.propagate = False
