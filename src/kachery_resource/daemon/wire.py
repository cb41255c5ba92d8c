"""The daemon's hot path on the wire: read a ``requestFromClient``, write a ``responseToClient``.

Every relayed request passes through here, so these are plain dict checks and orjson
instead of the pydantic models of :mod:`kachery_resource.messages`; those
stay the reference, and a unit test pins that both accept the same messages and that
:func:`response_json` equals ``messages.dumps(ResponseToClient(...))``. Numbers must be
JSON numbers here (the models would also take numeric strings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import ProtocolError

MAX_WAIT_SEC = 25.0  # never hold a request longer than common load-balancer limits
ANSWER_MARGIN_SEC = 1.0  # answer this long before the proxy's own timeout
MAX_NAME = 200
MAX_URI = 2048
MAX_RANGES = 16  # ranges per fileRanges request
MAX_OFFSET = 1 << 62  # far past any file; keeps offsets plain 64-bit numbers
FILE_UPLOAD = "fileUpload"
FILE_RANGES = "fileRanges"


def _encode(message: dict[str, Any]) -> str:
    return orjson.dumps(message).decode()


@dataclass(frozen=True, slots=True)
class FileRequest:
    """A valid ``fileUpload`` request for this daemon's resource."""

    uri: str
    wait_sec: float  # how long to wait for the upload before answering with its status


@dataclass(frozen=True, slots=True)
class RangesRequest:
    """A valid ``fileRanges`` request (docs/design-chunks.md): ``(offset, length)`` pairs."""

    uri: str
    ranges: tuple[tuple[int, int], ...]
    wait_sec: float


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _name(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME:
        raise ProtocolError(f"invalid requestFromClient message: {key} must be a string of "
                            f"1 to {MAX_NAME} characters")
    return value


def read_request(data: dict[str, Any], resource_name: str,
                 types: frozenset[str] = frozenset({FILE_UPLOAD})) -> FileRequest | RangesRequest:
    """Check a ``requestFromClient`` message meant for ``resource_name``; raise ProtocolError
    with a message for the client if it is malformed, for another resource, or of a type
    not in ``types``."""
    name = _name(data, "resourceName")
    _name(data, "zone")
    outer = _number(data.get("timeoutMsec"))
    if outer is None or outer <= 0:
        raise ProtocolError("invalid requestFromClient message: timeoutMsec must be a number > 0")
    inner = data.get("request")
    if not isinstance(inner, dict):
        raise ProtocolError("invalid requestFromClient message: request must be an object")
    if name != resource_name:
        raise ProtocolError(f"this daemon serves {resource_name!r}, not {name!r}")
    kind = inner.get("type")
    if kind not in types:
        raise ProtocolError(f"unsupported request type {str(kind)[:64]!r}")
    what = "FileUploadRequest" if kind == FILE_UPLOAD else "FileRangesRequest"
    uri = inner.get("uri")
    if not isinstance(uri, str) or len(uri) > MAX_URI:
        raise ProtocolError(f"invalid {what} message: uri must be a string of at "
                            f"most {MAX_URI} characters")
    wait = _number(inner.get("timeoutMsec"))
    if wait is None or wait < 0:
        raise ProtocolError(f"invalid {what} message: timeoutMsec must be a number >= 0")
    outer_sec = outer / 1000 - ANSWER_MARGIN_SEC
    wait_sec = max(0.0, min(wait / 1000, outer_sec, MAX_WAIT_SEC))
    if kind == FILE_UPLOAD:
        return FileRequest(uri, wait_sec)
    return RangesRequest(uri, _ranges(inner.get("ranges")), wait_sec)


def _ranges(value: object) -> tuple[tuple[int, int], ...]:
    problem = ("invalid FileRangesRequest message: ranges must be 1 to "
               f"{MAX_RANGES} pairs [offset, length] of integers, offset >= 0, length >= 1")
    if not isinstance(value, list) or not 0 < len(value) <= MAX_RANGES:
        raise ProtocolError(problem)
    out = []
    for pair in value:
        if not (isinstance(pair, list) and len(pair) == 2 and all(_is_int(v) for v in pair)):
            raise ProtocolError(problem)
        offset, length = pair
        if not (0 <= offset < MAX_OFFSET and 1 <= length < MAX_OFFSET):
            raise ProtocolError(problem)
        out.append((offset, length))
    return tuple(out)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def response_json(request_id: str, status: dict[str, Any] | None = None,
                  error: str | None = None, response: dict[str, Any] | None = None) -> str:
    """The ``responseToClient`` text: a ``fileUpload`` status, another request's whole
    ``response``, or ``error`` with an empty response."""
    if response is not None:
        return _encode({"type": "responseToClient", "requestId": request_id,
                        "response": response})
    if error is not None:
        return _encode({"type": "responseToClient", "requestId": request_id, "response": {},
                        "error": error})
    return _encode({"type": "responseToClient", "requestId": request_id,
                    "response": {"type": "fileUpload", "status": status}})
