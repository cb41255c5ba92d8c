"""The ``POST /api/gateway`` envelope: size bound, strict schema, timestamp window, signature.

Checked in this order, each failure a 4xx in the one error shape:

1. body ≤ ``max_body_bytes`` (413), valid JSON object (400);
2. envelope keys exactly ``payload``, ``fromClientId``, ``signature`` (+ the optional
   ``githubUserId``/``githubAccessToken``), ids and signature well formed (400);
3. the payload has exactly its type's fields, with the right types (400);
4. ``|gateway clock − payload.timestamp| ≤ window`` (401, naming the measured skew);
5. the Ed25519 signature of the payload verifies for ``fromClientId`` (401).
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from ..identity import is_client_id, is_signature_hex, verify_signature
from ..uri import is_sha1_hex
from .problems import ApiError, bad_request
from .settings import ZONE_NAME


def _sha1(value: str) -> str:
    if not is_sha1_hex(value):
        raise ValueError("must be a sha1: 40 lowercase hexadecimal characters")
    return value


def _client_id(value: str) -> str:
    if not is_client_id(value):
        raise ValueError("must be a client id: 64 lowercase hexadecimal characters")
    return value


def _signature(value: str) -> str:
    if not is_signature_hex(value):
        raise ValueError("must be an Ed25519 signature: 128 lowercase hexadecimal characters")
    return value


def _zone(value: str) -> str:
    if not ZONE_NAME.fullmatch(value):
        raise ValueError("must be a zone name (letters, digits, '.', '_', '-')")
    return value


Sha1 = Annotated[str, AfterValidator(_sha1)]
ClientId = Annotated[str, AfterValidator(_client_id)]
ZoneName = Annotated[str, AfterValidator(_zone)]
Size = Annotated[int, Field(ge=0)]


class Envelope(BaseModel):
    """The body of every gateway call."""

    model_config = ConfigDict(extra="forbid", strict=True)

    payload: dict[str, Any]
    fromClientId: ClientId
    signature: Annotated[str, AfterValidator(_signature)]
    githubUserId: str | None = None
    githubAccessToken: str | None = None


class Payload(BaseModel):
    """Fields every payload has; subclasses add their type's fields (and nothing else)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    timestamp: int
    zone: ZoneName = "default"


class GetClientInfo(Payload):
    type: Literal["getClientInfo"]
    clientId: ClientId


class FindFile(Payload):
    type: Literal["findFile"]
    hashAlg: Literal["sha1"]
    hash: Sha1
    onDemand: bool = True
    """Extension: ``false`` never asks the zone's resources on a miss (a daemon checking the
    bucket before its own upload sends it)."""


class InitiateFileUpload(Payload):
    type: Literal["initiateFileUpload"]
    hashAlg: Literal["sha1"]
    hash: Sha1
    size: Size
    acceptsUploadHeaders: bool = False
    """Extension: the client sends ``signedUploadHeaders`` with its PUT, so on a store that
    verifies checksums it may get a URL for the content key itself (kachery-cloud omits it)."""


class FinalizeFileUpload(Payload):
    type: Literal["finalizeFileUpload"]
    hashAlg: Literal["sha1"]
    hash: Sha1
    size: Size
    objectKey: Annotated[str, Field(max_length=1000)]


class DeleteFile(Payload):
    type: Literal["deleteFile"]
    hashAlg: Literal["sha1"]
    hash: Sha1


PAYLOAD_TYPES: dict[str, type[Payload]] = {
    "getClientInfo": GetClientInfo,
    "findFile": FindFile,
    "initiateFileUpload": InitiateFileUpload,
    "finalizeFileUpload": FinalizeFileUpload,
    "deleteFile": DeleteFile,
}


def describe(exc: ValidationError, where: str) -> str:
    """One line per schema problem, e.g. ``payload.hash: must be a sha1 …``."""
    problems = []
    for err in exc.errors()[:8]:
        loc = ".".join(str(p) for p in (where, *err["loc"]) if p != "")
        msg = "unexpected field" if err["type"] == "extra_forbidden" else err["msg"]
        problems.append(f"{loc}: {msg}")
    return "; ".join(problems)


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The request body, or a 413 if it is longer than ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "body_too_large",
                       f"request body of {request.content_length} bytes is over the {limit}-byte limit")
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "body_too_large", f"request body is over the {limit}-byte limit")
    return bytes(body)


def parse_envelope(body: bytes, payload_types: dict[str, type[Payload]]) -> tuple[Envelope, Payload]:
    """Parse and strictly validate a gateway call (steps 2 and 3)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request("invalid_json", f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise bad_request("invalid_request", "the request body must be a JSON object "
                          "{payload, fromClientId, signature}")
    try:
        envelope = Envelope.model_validate(data)
    except ValidationError as exc:
        raise bad_request("invalid_request", f"invalid request: {describe(exc, '')}") from None
    kind = envelope.payload.get("type")
    model = payload_types.get(kind) if isinstance(kind, str) else None
    if model is None:
        known = ", ".join(sorted(payload_types))
        raise bad_request("unknown_request_type",
                          f"unknown request type {str(kind)[:60]!r}; this gateway knows: {known}")
    try:
        payload = model.model_validate(envelope.payload)
    except ValidationError as exc:
        raise bad_request("invalid_request",
                          f"invalid {kind} request: {describe(exc, 'payload')}") from None
    return envelope, payload


def check_timestamp(timestamp_ms: int, window_sec: float, now: float | None = None) -> None:
    """Raise a 401 naming the skew if ``timestamp_ms`` is outside ±``window_sec`` of now."""
    now = time.time() if now is None else now
    skew = now - timestamp_ms / 1000
    if abs(skew) <= window_sec:
        return
    direction = "behind" if skew > 0 else "ahead of"
    raise ApiError(
        401,
        "timestamp_out_of_window",
        f"the request timestamp is {abs(skew):.1f} s {direction} the gateway's clock "
        f"(allowed: ±{window_sec:g} s). Check this computer's clock (enable NTP) and retry.",
    )


def check_signature(envelope: Envelope) -> None:
    """Raise a 401 unless the payload's signature verifies for ``fromClientId``."""
    if not verify_signature(envelope.payload, envelope.fromClientId, envelope.signature):
        raise ApiError(
            401,
            "invalid_signature",
            "the payload signature does not verify for fromClientId; sign the exact payload "
            "with this client's private key (kachery-cloud does this for you)",
        )
