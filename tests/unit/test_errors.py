"""errors.connection_problem: the root cause of a failed connection in a few words."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest
import requests

from kachery_resource.errors import connection_problem

from ..servers import free_port


@pytest.fixture
def plain_http_port() -> Iterator[int]:
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def failure(url: str) -> BaseException:
    with pytest.raises(requests.RequestException) as info:
        requests.get(url, timeout=5)
    return info.value


def test_refused() -> None:
    assert connection_problem(failure(f"http://127.0.0.1:{free_port()}/")) == "connection refused"


def test_tls_is_not_reported_by_its_errno(plain_http_port: int) -> None:
    # an SSLError is an OSError with errno 1 ("operation not permitted"): say TLS instead
    problem = connection_problem(failure(f"https://127.0.0.1:{plain_http_port}/"))
    assert problem.startswith("TLS error (") and "permitted" not in problem


def test_name_not_resolved_and_plain_timeouts() -> None:
    wrapped = ConnectionError("lookup failed")
    wrapped.__cause__ = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert connection_problem(wrapped) == "the host name could not be resolved"
    assert connection_problem(TimeoutError()) == "timed out"
