"""``load_files``: several URIs fetched in parallel, under one progress display."""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, wait
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from ..errors import KacheryResourceError, StoreError
from ..messages import UploadStatus
from ..uri import parse_uri
from .load import check_dest, load_file
from .progress import Bars, LineProgress, NullProgress, Progress, RichProgress, in_jupyter
from .settings import ClientSettings

#: files fetched at once by default
DEFAULT_JOBS = 4
#: seconds a stopped load waits for its downloads to close their partial files
STOP_GRACE = 2.0


@dataclass(frozen=True)
class Outcome:
    """One URI's result: the path that holds it, or the error that stopped it."""

    uri: str
    path: str | None = None
    error: KacheryResourceError | None = None

    @property
    def exit_code(self) -> int:
        return 0 if self.error is None else self.error.exit_code


def load_files(
    uris: Sequence[str],
    dest: str | Path | None = None,
    *,
    timeout: float | None = None,
    progress: bool | None = None,
    settings: ClientSettings | None = None,
    jobs: int = DEFAULT_JOBS,
) -> Iterator[Outcome]:
    """Fetch ``uris`` like :func:`load_file`, ``jobs`` at a time; yield outcomes in order.

    A failure is an :class:`Outcome` with its error; the others go on. With several URIs,
    ``dest`` must be an existing directory (each file is named after its label, else its
    sha1); it is checked before anything is fetched. ``progress`` as for load_file, with
    the bars of all files in one display.
    """
    if dest is not None and len(uris) > 1 and not Path(dest).expanduser().is_dir():
        raise StoreError(f"cannot write {len(uris)} files to {dest}: not a directory; "
                         "with several URIs --dest must be an existing directory")
    if dest is not None and len(uris) > 1:
        _ensure_distinct_targets(uris, dest)
    settings = settings or ClientSettings.from_env()
    stop = threading.Event()
    with ExitStack() as stack:
        bars = stack.enter_context(Bars()) if _wants_bars(progress) else None
        futures = _start(uris, jobs, lambda uri: _one(uri, dest, timeout, progress, bars,
                                                      settings, stop))
        try:
            for uri, future in zip(uris, futures, strict=True):
                yield _outcome(uri, future)
        finally:
            # Ctrl-C (or a caller that stops early): the files not started never start, the
            # ones downloading end at their next chunk, keeping their partial files for a
            # resume; a thread still waiting on the resource is a daemon and dies with us.
            stop.set()
            for future in futures:
                future.cancel()
            wait(futures, timeout=STOP_GRACE)


def _start(uris: Sequence[str], jobs: int, work: Callable[[str], str]) -> list[Future[str]]:
    """Run ``work`` on each URI in ``jobs`` daemon threads (an executor's threads would be
    joined at exit, so Ctrl-C would wait for every running download to finish)."""
    futures: list[Future[str]] = [Future() for _ in uris]
    todo: queue.SimpleQueue[tuple[str, Future[str]]] = queue.SimpleQueue()
    for pair in zip(uris, futures, strict=True):
        todo.put(pair)

    def worker() -> None:
        while True:
            try:
                uri, future = todo.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(work(uri))
                except BaseException as exc:  # handed to the reader of the future
                    future.set_exception(exc)

    for i in range(max(1, min(jobs, len(uris)))):
        threading.Thread(target=worker, name=f"load-{i}", daemon=True).start()
    return futures


def _one(uri: str, dest: str | Path | None, timeout: float | None, progress: bool | None,
         bars: Bars | None, settings: ClientSettings, stop: threading.Event) -> str:
    label = _label(uri)
    reporter: Progress
    if bars is not None:
        reporter = RichProgress(label, bars=bars)
    elif progress:
        reporter = LineProgress(label)
    else:
        reporter = NullProgress()
    try:
        return load_file(uri, dest, timeout=timeout, progress=_Stoppable(reporter, stop),
                         settings=settings)
    finally:
        reporter.close()


class _Stopped(BaseException):
    """Raised in a worker to end its download when the whole load is stopped."""


class _Stoppable:
    """A progress reporter that ends its download (raises :class:`_Stopped`) once ``stop``
    is set: it hears of every status and every chunk, so the end comes within one."""

    def __init__(self, inner: Progress, stop: threading.Event) -> None:
        self.inner, self.stop = inner, stop

    def _check(self) -> None:
        if self.stop.is_set():
            raise _Stopped

    def upload(self, status: UploadStatus) -> None:
        self._check()
        self.inner.upload(status)

    def download_started(self, size: int | None) -> None:
        self._check()
        self.inner.download_started(size)

    def downloaded(self, nbytes: int) -> None:
        self._check()
        self.inner.downloaded(nbytes)

    def close(self) -> None:
        self.inner.close()


def _outcome(uri: str, future: Future[str]) -> Outcome:
    try:
        return Outcome(uri, path=future.result())
    except KacheryResourceError as exc:
        return Outcome(uri, error=exc)


def _label(uri: str) -> str:
    try:
        return parse_uri(uri).sha1[:10]
    except KacheryResourceError:
        return uri[:20]


def _wants_bars(progress: bool | None) -> bool:
    if progress is None:
        return sys.stderr.isatty()
    return progress and (sys.stderr.isatty() or in_jupyter())


def _ensure_distinct_targets(uris: Sequence[str], dest: str | Path) -> None:
    """StoreError when two different files would be written to one name in ``dest``."""
    seen: dict[Path, str] = {}
    for uri in uris:
        try:
            parsed = parse_uri(uri)
            target = check_dest(dest, parsed)
        except KacheryResourceError:
            continue  # reported for that URI alone
        if target is None:
            continue
        other = seen.setdefault(target, parsed.sha1)
        if other != parsed.sha1:
            raise StoreError(f"two different files would be written to {target} (sha1 {other} "
                             f"and {parsed.sha1}); load them into separate directories")
