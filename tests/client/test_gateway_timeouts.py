"""Our client's findFile outwaits the longest on-demand wait a zone may be set to."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from annotated_types import Le

from kachery_resource.client.gateway import FIND_READ_TIMEOUT_SEC, GatewayClient
from kachery_resource.gateway.settings import ZoneSettings


def test_the_find_timeout_is_above_the_largest_on_demand_wait() -> None:
    field = ZoneSettings.model_fields["on_demand_wait_sec"]
    (bound,) = [m.le for m in field.metadata if isinstance(m, Le)]
    assert float(bound) < FIND_READ_TIMEOUT_SEC


class _Slow(BaseHTTPRequestHandler):
    delay = threading.Event()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        _Slow.delay.wait(1.5)  # longer than the client's other calls may take
        body = b'{"type": "findFile", "found": false}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_gateway() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_find_file_waits_for_a_slow_answer_other_calls_do_not(slow_gateway: str) -> None:
    with requests.Session() as session:
        client = GatewayClient(session, slow_gateway, "default", None, timeout=0.5)
        assert client.find_file("a" * 40) is None  # 1.5 s: within findFile's own bound
        with pytest.raises(Exception, match="cannot reach the gateway"):
            client.client_registered("b" * 64)  # 0.5 s
