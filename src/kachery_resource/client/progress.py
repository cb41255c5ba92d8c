"""Progress of one fetch: the daemon's upload (``bytesUploaded``), then our download.

A :class:`Progress` receives events; :class:`RichProgress` draws bars on a terminal,
:class:`LineProgress` writes a line every few seconds (stderr redirected to a file or a
pipe), :class:`NullProgress` ignores them. ``make_progress(None)`` reports only on a
terminal.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from rich.console import Console

from ..messages import UploadStatus


class Progress(Protocol):
    """What the client reports while it fetches one file."""

    def upload(self, status: UploadStatus) -> None:
        """The daemon's latest status (queued/running with ``bytesUploaded``, …)."""

    def download_started(self, size: int | None) -> None:
        """Bytes are about to flow from the bucket (``size`` if known)."""

    def downloaded(self, nbytes: int) -> None:
        """``nbytes`` more bytes arrived."""

    def close(self) -> None:
        """The fetch ended (success or not)."""


class NullProgress:
    """Reports nothing."""

    def upload(self, status: UploadStatus) -> None:
        pass

    def download_started(self, size: int | None) -> None:
        pass

    def downloaded(self, nbytes: int) -> None:
        pass

    def close(self) -> None:
        pass


class RichProgress:
    """Two bars on stderr: upload on the resource, then download."""

    def __init__(self, label: str, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichBars

        self._label = label
        self._bars = RichBars(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=True,
        )
        self._upload: Any = None
        self._download: Any = None
        self._started = False

    def _start(self) -> None:
        if not self._started:
            self._bars.start()
            self._started = True

    def upload(self, status: UploadStatus) -> None:
        self._start()
        description = f"{status.status.value} on resource {self._label}"
        if self._upload is None:
            self._upload = self._bars.add_task(description, total=status.size)
        self._bars.update(
            self._upload,
            description=description,
            total=status.size,
            completed=status.bytesUploaded or 0,
        )

    def download_started(self, size: int | None) -> None:
        self._start()
        self._download = self._bars.add_task(f"downloading {self._label}", total=size)

    def downloaded(self, nbytes: int) -> None:
        if self._download is not None:
            self._bars.advance(self._download, nbytes)

    def close(self) -> None:
        if self._started:
            self._bars.stop()
            self._started = False


class LineProgress:
    """A line on ``stream`` when the stage changes and at most every ``interval`` seconds
    within one, for logs: no bars, no terminal control codes."""

    def __init__(self, label: str, stream: TextIO | None = None, interval: float = 2.0) -> None:
        self._label = label
        self._stream = stream or sys.stderr
        self._interval = interval
        self._stage = ""
        self._last = 0.0
        self._size: int | None = None
        self._received = 0

    def _say(self, stage: str, done: int, size: int | None, *, final: bool = False) -> None:
        now = time.monotonic()
        if stage == self._stage and not final and now - self._last < self._interval:
            return
        self._stage, self._last = stage, now
        amount = _mib(done) + (f" of {_mib(size)}" if size is not None else "")
        print(f"{self._label}: {stage} {amount}", file=self._stream, flush=True)

    def upload(self, status: UploadStatus) -> None:
        self._say(f"{status.status.value} on the resource", status.bytesUploaded or 0, status.size)

    def download_started(self, size: int | None) -> None:
        self._size = size
        self._say("downloading", 0, size)

    def downloaded(self, nbytes: int) -> None:
        self._received += nbytes
        self._say("downloading", self._received, self._size)

    def close(self) -> None:
        if self._stage == "downloading":
            self._say("downloaded", self._received, None, final=True)


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB"


def make_progress(progress: bool | Progress | None, label: str) -> Progress:
    """``True``: bars on a terminal, else lines; ``False``: nothing; ``None``: bars only if
    stderr is a terminal."""
    if progress is None or progress is True:
        if sys.stderr.isatty():
            return RichProgress(label)
        if not progress:
            return NullProgress()
        return RichProgress(label) if _in_jupyter() else LineProgress(label)
    if progress is False:
        return NullProgress()
    return progress


def _in_jupyter() -> bool:
    """A notebook draws rich's bars although its stderr is not a terminal."""
    from rich.console import Console

    return Console(stderr=True).is_jupyter
