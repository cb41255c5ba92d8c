import pytest

from kachery_resource.errors import ProtocolError
from kachery_resource.messages import (
    Acknowledge,
    FileUploadResponse,
    Initialize,
    RequestFromClient,
    ResponseToClient,
    UploadState,
    UploadStatus,
    dump,
    parse,
)


def test_v1_acknowledge_is_exactly_v1() -> None:
    assert dump(Acknowledge()) == {"type": "acknowledge"}


def test_extra_fields_accepted_on_input_never_emitted() -> None:
    msg = parse(Initialize, {"type": "initialize", "resourceName": "r", "zone": "z",
                             "proxySecret": "s", "somethingNew": 1})
    assert dump(msg) == {"type": "initialize", "resourceName": "r", "zone": "z", "proxySecret": "s"}


def test_response_envelope_shape() -> None:
    inner = FileUploadResponse(status=UploadStatus(status=UploadState.QUEUED, size=3))
    env = ResponseToClient(requestId="abc", response=dump(inner))
    assert dump(env) == {"type": "responseToClient", "requestId": "abc",
                         "response": {"type": "fileUpload", "status": {"status": "queued", "size": 3}}}


@pytest.mark.parametrize("data", [
    "not json",
    {"type": "initialize"},
    {"type": "requestFromClient", "resourceName": "r", "zone": "z", "request": [], "timeoutMsec": 1},
    {"type": "requestFromClient", "resourceName": "r", "zone": "z", "request": {}, "timeoutMsec": -1},
])
def test_invalid_messages_raise_protocol_error(data: object) -> None:
    model = Initialize if isinstance(data, str) or data.get("type") == "initialize" else RequestFromClient  # type: ignore[union-attr]
    with pytest.raises(ProtocolError, match="invalid"):
        parse(model, data)
