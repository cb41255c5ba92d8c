"""The daemon's side of a cold read: ``fileRanges`` requests, repeated until the chunks a
read needs are uploaded (the daemon holds each request up to ``WAIT_SEC``), and what
their answers mean: the file's shape, chunks uploaded, or an error that ends the read.
"""

from __future__ import annotations

import time
from typing import Any

from ..client.resource import Busy, ResourceClient
from ..errors import (
    FileNotFoundOnResource,
    GatewayError,
    TimeoutError_,
    UnsupportedRequestError,
    UploadFailedError,
)
from .offers import RangesUnavailable, no_ranges

WAIT_SEC = 20.0  # how long the daemon may hold each fileRanges request


class ChunkRequests:
    """``fileRanges`` for one file of one resource; remembers the chunks reported uploaded."""

    def __init__(self, uri: str, name: str, resource: ResourceClient,
                 timeout: float | None) -> None:
        self._uri, self._name = uri, name
        self._resource = resource
        self._timeout = timeout
        self.uploaded: set[int] = set()  # chunks the daemon reported in the bucket

    def shape(self) -> tuple[int, int]:
        """The file's size and chunk size (the daemon hashes the file first if it must)."""
        got = self._request([(0, 1)], [0], first=True)
        return int(got["size"]), int(got["chunkSize"])

    def ask(self, indices: list[int], chunk_size: int) -> None:
        """Returns once every chunk in ``indices`` is uploaded; asks for them as runs."""
        cs = chunk_size
        self._request([(run.start * cs, len(run) * cs) for run in runs_of(indices)], indices)

    def _request(self, ranges: list[tuple[int, int]], indices: list[int],
                 first: bool = False) -> dict[str, Any]:
        end = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError_(f"the resource did not upload the chunks of {self._name} "
                                    f"within {self._timeout:g} s; try again later")
            try:
                got = self._resource.request_ranges(
                    self._uri, ranges, WAIT_SEC if left is None else min(WAIT_SEC, left))
            except Busy as busy:
                time.sleep(busy.retry_after)
                continue
            except UnsupportedRequestError as exc:
                no_ranges(self._resource.url)
                raise RangesUnavailable(str(exc)) from exc
            if self._done(got, indices, first):
                return got

    def _done(self, got: dict[str, Any], indices: list[int], first: bool) -> bool:
        status = got.get("status")
        if status == "unavailable":
            no_ranges(self._resource.url)
            raise RangesUnavailable(str(got.get("error") or "the resource cannot send chunks"))
        if status == "not-found":
            raise FileNotFoundOnResource(f"{self._uri} is neither in the zone's bucket nor on "
                                         "the resource")
        if status == "error":
            raise UploadFailedError(f"the resource could not send {self._uri}: "
                                    f"{got.get('error') or 'no reason given'}")
        if status == "hashing":
            return False
        if status != "ready" or not isinstance(got.get("chunks"), list):
            raise GatewayError(f"the resource answered fileRanges for {self._name} with "
                               f"{str(got)[:200]}")
        if first and not (isinstance(got.get("size"), int) and isinstance(got.get("chunkSize"), int)):
            raise GatewayError(f"the resource gave no size for {self._name}")
        states = {c.get("index"): c for c in got["chunks"] if isinstance(c, dict)}
        self.uploaded.update(i for i, c in states.items()
                             if isinstance(i, int) and c.get("status") == "completed")
        wanted = [] if first and got.get("size") == 0 else indices
        for i in wanted:
            chunk = states.get(i) or {}
            if chunk.get("status") == "error":
                raise UploadFailedError(f"the resource could not send chunk {i} of {self._uri}: "
                                        f"{chunk.get('error') or 'no reason given'}")
        return all((states.get(i) or {}).get("status") == "completed" for i in wanted)


def runs_of(indices: list[int]) -> list[range]:
    """The runs of consecutive numbers in ``indices`` (sorted)."""
    runs: list[range] = []
    for i in indices:
        if runs and runs[-1].stop == i:
            runs[-1] = range(runs[-1].start, i + 1)
        else:
            runs.append(range(i, i + 1))
    return runs
