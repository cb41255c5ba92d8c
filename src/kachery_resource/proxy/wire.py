"""Fast, strict handling of the hot-path messages (client body, request, daemon reply).

These checks mirror ``kachery_resource.messages`` (RequestFromClient, ResponseToClient)
with plain dict operations and orjson (a few times faster than the json module on these
small messages, which was a sixth of the proxy's CPU), because they run for every relayed
request; a unit test pins that :func:`request_message` equals
``messages.dump(RequestFromClient(...))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .errors import ProxyRefusal, bad_request

V1_FILE_UPLOAD_KEYS = ("type", "uri", "timeoutMsec")
#: the inner request types this proxy routes (to a daemon that declared them)
ROUTED_REQUEST_TYPES = ("fileUpload", "fileRanges")
#: what a daemon answers when it declares nothing (v1, or a v2 daemon before fileRanges)
DEFAULT_REQUEST_TYPES = frozenset({"fileUpload"})
MAX_TYPE_NAME = 64


def compact_json(value: Any) -> bytes:
    """UTF-8 JSON without spaces."""
    return orjson.dumps(value)


@dataclass
class ClientRequest:
    """A validated ``POST /r/{name}`` body."""

    name: str
    zone: str
    request: dict[str, Any]  # the inner request, forwarded to the daemon
    outer_msec: float  # the client's own wait

    @property
    def sha1(self) -> str | None:
        uri = self.request.get("uri")
        if isinstance(uri, str) and uri.startswith("sha1://"):
            return uri[7:47]
        return None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_client_body(raw: bytes, path_name: str) -> ClientRequest:
    """Validate a client's body; raise ProxyRefusal (400, or 500 for a name mismatch)."""
    try:
        data = orjson.loads(raw)
    except (ValueError, RecursionError):  # orjson.JSONDecodeError is a ValueError
        raise bad_request("invalid request: the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise bad_request("invalid request: the body must be a JSON object")
    if "requestId" in data:
        raise bad_request("invalid request: requestId is assigned by the proxy; do not send one")
    if data.get("type") != "requestFromClient":
        raise bad_request('invalid request: "type" must be "requestFromClient"')
    name, zone, request = data.get("resourceName"), data.get("zone"), data.get("request")
    outer: Any = data.get("timeoutMsec")
    if not isinstance(name, str) or not name:
        raise bad_request('invalid request: "resourceName" must be a non-empty string')
    if not isinstance(zone, str) or not zone:
        raise bad_request('invalid request: "zone" must be a non-empty string')
    if not isinstance(request, dict) or not isinstance(request.get("type"), str):
        raise bad_request('invalid request: "request" must be an object with a string "type"')
    if not _is_number(outer) or not 0 < outer < 1e12:
        raise bad_request('invalid request: "timeoutMsec" must be a positive number')
    if "timeoutMsec" in request and (not _is_number(request["timeoutMsec"])
                                     or not 0 <= request["timeoutMsec"] < 1e12):
        raise bad_request('invalid request: "request.timeoutMsec" must be a number >= 0')
    if request["type"] == "fileUpload" and not isinstance(request.get("uri"), str):
        raise bad_request('invalid request: a fileUpload request needs a string "uri"')
    if name != path_name:
        raise ProxyRefusal(500, "name-mismatch",
                           f"Resource name mismatch: {name} <> {path_name} (body vs URL path)")
    return ClientRequest(name, zone, request, float(outer))


def clamp_waits(req: ClientRequest, max_wait_sec: float, margin_sec: float) -> float:
    """Clamp the outer wait; make the inner timeout end before it. Returns the wait (s)."""
    wait_sec = min(req.outer_msec / 1000.0, max_wait_sec)
    inner = req.request.get("timeoutMsec")
    if inner is not None:
        limit_msec = max(wait_sec - margin_sec, wait_sec / 2) * 1000.0
        if inner > limit_msec:
            req.request["timeoutMsec"] = int(limit_msec)
    return wait_sec


def declared_types(types: list[str] | None) -> frozenset[str]:
    """The request types a daemon's ``initialize`` declares (``fileUpload`` at least)."""
    names = {t for t in types or () if isinstance(t, str) and 0 < len(t) <= MAX_TYPE_NAME}
    return DEFAULT_REQUEST_TYPES | names


def check_declared(request: dict[str, Any], types: frozenset[str], name: str) -> None:
    """Refuse at once (400 ``unsupported-request``) a request its daemon did not declare."""
    kind = request["type"]
    if kind not in types:
        raise ProxyRefusal(400, "unsupported-request",
                           f"resource {name} does not answer {str(kind)[:MAX_TYPE_NAME]!r} "
                           f"requests (it answers {', '.join(sorted(types))})")


def v1_request(request: dict[str, Any]) -> dict[str, Any]:
    """The inner request as a v1 daemon accepts it (exactly the v1 fields), or refuse."""
    if request["type"] != "fileUpload":
        raise ProxyRefusal(400, "unsupported-request",
                           f"this resource speaks protocol 1, which has no "
                           f"{str(request['type'])[:MAX_TYPE_NAME]!r} request (only fileUpload)")
    if "timeoutMsec" not in request:
        raise bad_request('invalid request: a fileUpload request needs "timeoutMsec"')
    if len(request) == 3:
        return request
    return {k: request[k] for k in V1_FILE_UPLOAD_KEYS}


def request_message(name: str, zone: str, request: dict[str, Any], wait_msec: float,
                    request_id: str) -> bytes:
    """The ``requestFromClient`` message sent to the daemon (the exact v1 fields)."""
    return orjson.dumps({"type": "requestFromClient", "resourceName": name, "zone": zone,
                            "request": request, "timeoutMsec": wait_msec,
                            "requestId": request_id})


def client_envelope(reply: dict[str, Any]) -> dict[str, Any]:
    """What the client gets for a daemon's reply: the responseToClient envelope."""
    out: dict[str, Any] = {"type": "responseToClient", "response": reply.get("response")}
    error = reply.get("error")
    if error:
        out["error"] = error
    return out


def parse_daemon_message(text: str | bytes) -> dict[str, Any] | None:
    """A daemon message as a dict with a string ``type``, or None if it is not one."""
    try:
        data = orjson.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return None
    return data


def is_valid_reply(data: dict[str, Any]) -> bool:
    """Answer whether a responseToClient from a daemon has the v1 field types."""
    return (isinstance(data.get("requestId"), str)
            and isinstance(data.get("response", {}), (dict, type(None)))
            and isinstance(data.get("error", ""), (str, type(None))))
