"""``load_files``: several URIs fetched in parallel, under one progress display."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from ..errors import KacheryResourceError, StoreError
from ..uri import parse_uri
from .load import load_file
from .progress import Bars, LineProgress, NullProgress, Progress, RichProgress, in_jupyter
from .settings import ClientSettings

#: files fetched at once by default
DEFAULT_JOBS = 4


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
    settings = settings or ClientSettings.from_env()
    with ExitStack() as stack:
        bars = stack.enter_context(Bars()) if _wants_bars(progress) else None
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=max(1, jobs)))
        futures = [(uri, pool.submit(_one, uri, dest, timeout, progress, bars, settings))
                   for uri in uris]
        try:
            for uri, future in futures:
                yield _outcome(uri, future)
        finally:
            for _, future in futures:
                future.cancel()


def _one(uri: str, dest: str | Path | None, timeout: float | None, progress: bool | None,
         bars: Bars | None, settings: ClientSettings) -> str:
    label = _label(uri)
    reporter: Progress
    if bars is not None:
        reporter = RichProgress(label, bars=bars)
    elif progress:
        reporter = LineProgress(label)
    else:
        reporter = NullProgress()
    try:
        return load_file(uri, dest, timeout=timeout, progress=reporter, settings=settings)
    finally:
        reporter.close()


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
