"""Wire messages between daemon, proxy and client (protocol v1 plus our extensions).

Parsing accepts extra fields from anyone (``extra="ignore"``); serializing with
:func:`dump` emits exactly the declared fields that are set, so a v1 peer that
validates strictly never sees a field it does not know. Extension fields are
declared ``None`` by default and only sent to a peer that negotiated protocol 2.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ProtocolError

PROTOCOL_VERSIONS = (1, 2)


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def dump(message: BaseModel) -> dict[str, Any]:
    """The JSON object for ``message``: declared fields that are set and not None."""
    return message.model_dump(mode="json", exclude_none=True, by_alias=True)


def dumps(message: BaseModel) -> str:
    return json.dumps(dump(message), separators=(",", ":"))


# -- daemon ⇄ proxy (WebSocket) ---------------------------------------------------------
class Initialize(Message):
    type: Literal["initialize"]
    resourceName: str = Field(min_length=1, max_length=200)
    zone: str = Field(min_length=1, max_length=200)
    proxySecret: str = Field(max_length=4096)
    # extension: a daemon that speaks protocol 2 says so here (a v1 daemon never sends it)
    protocolVersion: int | None = None
    # extension (protocol 2): the inner request types the daemon answers; absent means
    # fileUpload only (docs/design-chunks.md, "Negotiation")
    requestTypes: list[str] | None = Field(default=None, max_length=32)


class Acknowledge(Message):
    type: Literal["acknowledge"] = "acknowledge"
    # extension fields, sent only to a protocol-2 daemon
    protocolVersion: int | None = None
    heartbeatSec: float | None = None


class Ping(Message):
    type: Literal["ping"] = "ping"


class Pong(Message):
    """Extension (protocol 2 only): proxy ⇄ daemon heartbeat answer."""

    type: Literal["pong"] = "pong"


class RequestFromClient(Message):
    type: Literal["requestFromClient"] = "requestFromClient"
    resourceName: str = Field(min_length=1, max_length=200)
    zone: str = Field(min_length=1, max_length=200)
    request: dict[str, Any]
    timeoutMsec: float = Field(gt=0)
    requestId: str | None = None


class ResponseToClient(Message):
    type: Literal["responseToClient"] = "responseToClient"
    requestId: str | None = None
    response: dict[str, Any] | None = None
    error: str | None = None


# -- the inner request: fileUpload ----------------------------------------------------
class UploadState(StrEnum):
    """Where one upload job stands, as reported in ``status.status``."""

    NOT_FOUND = "not-found"  # the daemon has no file for this hash
    QUEUED = "queued"  # waiting for an upload slot
    RUNNING = "running"  # bytes are being sent
    COMPLETED = "completed"  # the object is in the bucket and verified
    ERROR = "error"  # the upload failed or the file changed; see ``error``


class UploadStatus(Message):
    status: UploadState
    size: int | None = None
    bytesUploaded: int | None = None
    timestampRequested: int | None = None
    timestampStarted: int | None = None
    timestampCompleted: int | None = None
    error: str | None = None


class FileUploadRequest(Message):
    type: Literal["fileUpload"]
    uri: str = Field(max_length=2048)
    timeoutMsec: float = Field(ge=0)


class FileUploadResponse(Message):
    type: Literal["fileUpload"] = "fileUpload"
    status: UploadStatus


def parse(model: type[Message], data: Any) -> Any:
    """Validate ``data`` (a dict or JSON text) as ``model``; raise ProtocolError if invalid."""
    try:
        if isinstance(data, (str, bytes)):
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise ProtocolError(f"invalid {model.__name__} message: {where}: {first['msg']}") from exc
