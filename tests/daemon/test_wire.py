"""The daemon's fast wire path agrees with the pydantic models of kachery_resource.messages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kachery_resource.daemon.jobs import UploadJob
from kachery_resource.daemon.wire import FileRequest, read_request, response_json
from kachery_resource.errors import ProtocolError
from kachery_resource.messages import (
    FileUploadRequest,
    FileUploadResponse,
    RequestFromClient,
    ResponseToClient,
    UploadState,
    UploadStatus,
    dump,
    dumps,
    parse,
)

URI = "sha1://" + "ab" * 20


def request(**changes: Any) -> dict[str, Any]:
    inner = {"type": "fileUpload", "uri": URI, "timeoutMsec": 5000}
    inner.update(changes.pop("inner", {}))
    msg: dict[str, Any] = {"type": "requestFromClient", "resourceName": "res", "zone": "default",
                           "request": inner, "timeoutMsec": 20000, "requestId": "id1"}
    msg.update(changes)
    return {k: v for k, v in msg.items() if v is not ...}


def models_accept(data: dict[str, Any]) -> bool:
    try:
        outer = parse(RequestFromClient, data)
        parse(FileUploadRequest, outer.request)
    except ProtocolError:
        return False
    return True


CASES = [
    request(),
    request(extra="ignored", inner={"extra": 1}),
    request(timeoutMsec=0.5, inner={"timeoutMsec": 0}),
    request(resourceName=""),
    request(resourceName="x" * 201),
    request(resourceName=7),
    request(zone=...),
    request(zone=""),
    request(timeoutMsec=0),
    request(timeoutMsec=-5),
    request(timeoutMsec=None),
    request(request=[]),
    request(request="x"),
    request(inner={"uri": 5}),
    request(inner={"uri": "x" * 2049}),
    request(inner={"timeoutMsec": -1}),
    request(inner={"timeoutMsec": None}),
]


@pytest.mark.parametrize("data", CASES)
def test_accepts_exactly_what_the_models_accept(data: dict[str, Any]) -> None:
    try:
        read_request(data, "res")
        fast = True
    except ProtocolError as exc:
        assert str(exc)  # says what is wrong
        fast = False
    assert fast == models_accept(data)


def test_wait_is_clamped_to_the_proxy_and_load_balancer_limits() -> None:
    assert read_request(request(), "res") == FileRequest(URI, 5.0)
    # the proxy's own wait (timeoutMsec outside) minus a margin bounds it
    assert read_request(request(timeoutMsec=3000), "res").wait_sec == 2.0
    assert read_request(request(inner={"timeoutMsec": 60_000}, timeoutMsec=90_000),
                        "res").wait_sec == 25.0
    assert read_request(request(timeoutMsec=500), "res").wait_sec == 0.0


def test_other_resource_or_request_type_is_refused_with_a_message() -> None:
    with pytest.raises(ProtocolError, match="serves 'res', not 'other'"):
        read_request(request(resourceName="other"), "res")
    with pytest.raises(ProtocolError, match="unsupported request type 'list'"):
        read_request(request(inner={"type": "list"}), "res")


def job(state: UploadState, **fields: Any) -> UploadJob:
    j = UploadJob("ab" * 20, timestamp_requested=1700000000000)
    j.state = state
    for key, value in fields.items():
        setattr(j, key, value)
    return j


@pytest.mark.parametrize("j", [
    job(UploadState.NOT_FOUND),
    job(UploadState.QUEUED),
    job(UploadState.RUNNING, size=10, bytes_uploaded=4, timestamp_started=1700000000100),
    job(UploadState.COMPLETED, size=10, bytes_uploaded=10, timestamp_started=1700000000100,
        timestamp_completed=1700000000200),
    job(UploadState.ERROR, size=10, error="file changed: résumé.dat"),
])
def test_response_equals_the_models_dump(j: UploadJob) -> None:
    status = j.wire_status()
    model = UploadStatus.model_validate(status)
    assert dump(model) == status  # only set fields, in the v1 shape
    expected = dumps(ResponseToClient(requestId="id1",
                                      response=dump(FileUploadResponse(status=model))))
    assert json.loads(response_json("id1", status)) == json.loads(expected)


def test_error_response_equals_the_models_dump() -> None:
    expected = dumps(ResponseToClient(requestId="id1", response={}, error="bad \"uri\""))
    assert json.loads(response_json("id1", error="bad \"uri\"")) == json.loads(expected)
