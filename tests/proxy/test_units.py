"""Unit tests: hot-path wire helpers, frames, settings, OpenAPI coverage of the routes."""

from __future__ import annotations

from pathlib import Path

import pytest

from kachery_resource.errors import ConfigError
from kachery_resource.messages import RequestFromClient, dump
from kachery_resource.proxy.app import build_app, load_openapi
from kachery_resource.proxy.connection import text_frame
from kachery_resource.proxy.errors import ProxyRefusal
from kachery_resource.proxy.settings import ProxySettings, load_config_file, make_settings
from kachery_resource.proxy.wire import (
    clamp_waits,
    client_envelope,
    parse_client_body,
    request_message,
    v1_request,
)

from .conftest import client_body


def test_request_message_equals_the_pydantic_dump() -> None:
    import json

    text = request_message("r", "z", {"type": "fileUpload", "uri": "sha1://x", "timeoutMsec": 5},
                           10000, "id1")
    data = json.loads(text)
    assert data == dump(RequestFromClient.model_validate(data))
    assert list(data) == ["type", "resourceName", "zone", "request", "timeoutMsec", "requestId"]


@pytest.mark.parametrize(("outer", "inner", "max_wait", "wait", "inner_after"), [
    (10000, 5000, 25, 10.0, 5000),        # kachery-cloud 0.4.10: untouched
    (60000, 60000, 25, 25.0, 24000),      # clamped, inner ends 1 s before the wait
    (1000, 5000, 25, 1.0, 500),           # short wait: inner is half of it
])
def test_clamp_waits(outer: float, inner: float, max_wait: float, wait: float,
                     inner_after: float) -> None:
    import json

    req = parse_client_body(json.dumps(client_body("r", inner=inner, outer=outer)).encode(), "r")
    assert clamp_waits(req, max_wait, 1.0) == wait
    assert req.request["timeoutMsec"] == inner_after


def test_v1_request_keeps_exactly_the_v1_fields() -> None:
    assert v1_request({"type": "fileUpload", "uri": "u", "timeoutMsec": 1, "x": 2}) == \
        {"type": "fileUpload", "uri": "u", "timeoutMsec": 1}
    with pytest.raises(ProxyRefusal):
        v1_request({"type": "fileUpload", "uri": "u"})


def test_client_envelope() -> None:
    assert client_envelope({"requestId": "x", "response": {"a": 1}}) == \
        {"type": "responseToClient", "response": {"a": 1}}
    assert client_envelope({"response": None, "error": "boom"})["error"] == "boom"


@pytest.mark.parametrize(("size", "header"), [(5, b"\x81\x05"), (200, b"\x81\x7e\x00\xc8"),
                                              (70000, b"\x81\x7f" + (70000).to_bytes(8, "big"))])
def test_text_frame_lengths(size: int, header: bytes) -> None:
    frame = text_frame(b"x" * size)
    assert frame.startswith(header) and len(frame) == len(header) + size


def test_settings_file_and_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "proxy.yaml"
    cfg.write_text("maxWaitSec: 20\nresource_zones: {a: z}\nport: 4000\n")
    s = make_settings(load_config_file(cfg), {"port": 5000, "max_wait_sec": None})
    assert (s.port, s.max_wait_sec, s.resource_zones) == (5000, 20, {"a": "z"})
    cfg.write_text("maxWaitSec: -1\n")
    with pytest.raises(ConfigError, match=r"max_wait_sec|maxWaitSec"):
        make_settings(load_config_file(cfg), {})
    cfg.write_text("unknownKey: 1\n")
    with pytest.raises(ConfigError):
        make_settings(load_config_file(cfg), {})


def test_every_route_is_in_the_openapi_document() -> None:
    app = build_app(ProxySettings(proxy_secret="x", access_log="off"))
    paths = set(load_openapi()["paths"])
    routes = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert routes <= paths, routes - paths
