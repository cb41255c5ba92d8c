"""Which resources serve ranges (``fileRanges``), as far as this session has seen.

A resource's proxy lists the request types it routes in ``GET /api/info``
(``resourceRequestTypes``); a resource that refused ranges once (an older daemon behind
a proxy that routes them, a gateway without chunks) is remembered until the process
ends, so later opens go straight to the whole-file path (docs/design-chunks.md).
"""

from __future__ import annotations

import requests

_NO_RANGES: set[str] = set()  # resources that do not serve ranges, for this session


def ranges_offered(session: requests.Session, resource_url: str) -> bool:
    """Whether the resource's proxy routes ``fileRanges`` (its ``/api/info`` says so), and
    this session has not seen the resource refuse them."""
    if resource_url in _NO_RANGES:
        return False
    proxy = resource_url.rstrip("/").rsplit("/r/", 1)[0]
    try:
        resp = session.get(f"{proxy}/api/info", timeout=10)
        info = resp.json() if resp.status_code == 200 else None
    except (requests.RequestException, ValueError):
        info = None
    types = info.get("resourceRequestTypes") if isinstance(info, dict) else None
    if not (isinstance(types, list) and "fileRanges" in types):
        _NO_RANGES.add(resource_url)
        return False
    return True


def no_ranges(resource_url: str) -> None:
    """Remember that ``resource_url`` does not serve ranges (for this session)."""
    _NO_RANGES.add(resource_url)


class RangesUnavailable(Exception):
    """The resource cannot serve ranges: read the file the whole-file way."""
