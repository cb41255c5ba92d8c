"""The soak's relay passes a server's reset on to the client at once."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from soak.procs import BlackHoleRelay


def _resetting_server() -> tuple[socket.socket, threading.Event]:
    """A server that answers one read by resetting the connection (as a killed process
    with unread input does)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    got = threading.Event()

    def serve() -> None:
        conn, _ = srv.accept()
        conn.recv(10)
        got.set()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # RST, not FIN
    threading.Thread(target=serve, daemon=True).start()
    return srv, got


def test_a_reset_upstream_closes_the_client_side_without_it_sending() -> None:
    srv, got = _resetting_server()
    relay = BlackHoleRelay(srv.getsockname()[1])
    relay.start()
    client = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
    client.sendall(b"hello")
    assert got.wait(5)
    client.settimeout(3)  # the old relay waited for the client's next bytes: this timed out
    with contextlib.suppress(ConnectionResetError):  # a reset is a prompt close too
        assert client.recv(10) == b""
    client.close()
    srv.close()


def test_bytes_flow_both_ways() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def echo() -> None:
        conn, _ = srv.accept()
        conn.sendall(conn.recv(100).upper())
        conn.close()
    threading.Thread(target=echo, daemon=True).start()
    relay = BlackHoleRelay(srv.getsockname()[1])
    relay.start()
    client = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
    client.sendall(b"abc")
    assert client.recv(100) == b"ABC"
    assert client.recv(100) == b""
    client.close()
    srv.close()
