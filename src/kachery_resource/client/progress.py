"""Progress of fetches: the daemon's upload (``bytesUploaded``), then our download.

A :class:`Progress` receives events for one file; :class:`RichProgress` draws bars on a
terminal (several files share one display, :class:`Bars`), :class:`LineProgress` writes
a line every few seconds (stderr redirected to a file or a pipe), :class:`NullProgress`
ignores them. Both visible kinds show something the moment a fetch starts, and every
amount is in MiB or GiB (:func:`format_bytes`).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Task
    from rich.text import Text

from ..messages import UploadStatus

GIB = 2**30
MIB = 2**20


def format_bytes(nbytes: float, like: float | None = None) -> str:
    """``12.3 MiB`` below a GiB, ``1.25 GiB`` from there: the one unit family we show.

    ``like``: pick the unit for this amount instead (``0.50 GiB of 3.00 GiB``)."""
    if max(nbytes, like or 0) >= GIB:
        return f"{nbytes / GIB:.2f} GiB"
    return f"{nbytes / MIB:.1f} MiB"


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


class Bars:
    """One rich display on stderr that the bars of several fetches share."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichBars

        self.display = RichBars(
            TextColumn("{task.description}"), BarColumn(), *_amount_and_speed(),
            TimeRemainingColumn(), console=console or Console(stderr=True), transient=True,
            # lines printed meanwhile go above the bars, but stdout only when it is the
            # terminal too: redirected, it must keep every line (`load a b > paths.txt`)
            redirect_stdout=sys.stdout.isatty(),
        )
        self.display.start()

    def close(self) -> None:
        self.display.stop()

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _amount_and_speed() -> tuple[Any, Any]:
    """Rich columns for bytes done (of total) and speed, in :func:`format_bytes` units."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Amount(ProgressColumn):
        def render(self, task: Task) -> Text:
            done = format_bytes(task.completed)
            if task.total is None:
                return Text(done)
            return Text(f"{format_bytes(task.completed, task.total)} of {format_bytes(task.total)}")

    class Speed(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{format_bytes(speed)}/s")

    return Amount(), Speed()


class RichProgress:
    """Bars for one file: looking for it, upload on the resource, then download."""

    def __init__(self, label: str, console: Console | None = None, bars: Bars | None = None) -> None:
        self._label = label
        self._own = bars is None
        self._bars = bars or Bars(console)
        show = self._bars.display
        self._upload: Any = show.add_task(f"looking for {label}", total=None)
        self._download: Any = None

    def upload(self, status: UploadStatus) -> None:
        if self._upload is None:
            return
        self._bars.display.update(
            self._upload, description=f"{status.status.value} on resource {self._label}",
            total=status.size, completed=status.bytesUploaded or 0,
        )

    def download_started(self, size: int | None) -> None:
        self._download = self._bars.display.add_task(f"downloading {self._label}", total=size)

    def downloaded(self, nbytes: int) -> None:
        if self._download is not None:
            self._bars.display.advance(self._download, nbytes)

    def close(self) -> None:
        """Stop our own display; in a shared one, take this file's bars away."""
        if self._own:
            self._bars.close()
            return
        for task in (self._upload, self._download):
            if task is not None:
                self._bars.display.remove_task(task)
        self._upload = self._download = None


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
        print(f"{label}: looking for it", file=self._stream, flush=True)

    def _say(self, stage: str, done: int, size: int | None, *, final: bool = False) -> None:
        now = time.monotonic()
        if stage == self._stage and not final and now - self._last < self._interval:
            return
        self._stage, self._last = stage, now
        amount = format_bytes(done, size) + (f" of {format_bytes(size)}" if size is not None else "")
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
        self._stage = "closed"


def make_progress(progress: bool | Progress | None, label: str, bars: Bars | None = None) -> Progress:
    """``True``: bars on a terminal, else lines; ``False``: nothing; ``None``: bars only if
    stderr is a terminal. ``bars``: a shared display for the bars of several files."""
    if progress is None or progress is True:
        if bars is not None:
            return RichProgress(label, bars=bars)
        if sys.stderr.isatty():
            return RichProgress(label)
        if not progress:
            return NullProgress()
        return RichProgress(label) if in_jupyter() else LineProgress(label)
    if progress is False:
        return NullProgress()
    return progress


def in_jupyter() -> bool:
    """A notebook draws rich's bars although its stderr is not a terminal."""
    from rich.console import Console

    return Console(stderr=True).is_jupyter
