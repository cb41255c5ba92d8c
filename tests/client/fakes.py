"""A fake gateway + proxy in one threaded HTTP server, for unit tests of the client only.

End-to-end paths use the real servers (tests/interop); this fake lets the client's
loop, error mapping and integrity checks be tested fast and deterministically.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kachery_resource.identity import verify_signature


@dataclass
class Upload:
    """A scripted daemon-side upload: completes ``duration`` s after first request."""

    data: bytes
    duration: float = 0.0
    fail: str | None = None
    started: float | None = None

    def state(self, now: float) -> tuple[str, int]:
        if self.started is None:
            self.started = now
        done = min(1.0, (now - self.started) / self.duration) if self.duration else 1.0
        if done >= 1.0:
            return ("error" if self.fail else "completed"), len(self.data)
        return "running", int(len(self.data) * done)


@dataclass
class FakeState:
    bucket: dict[str, bytes] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)
    uploads: dict[str, Upload] = field(default_factory=dict)
    resource_status: int = 200
    #: statuses answered first, one per request, before ``resource_status`` applies
    resource_script: list[int] = field(default_factory=list)
    gateway_status: int = 200
    require_registered: set[str] | None = None
    resource_requests: list[dict[str, Any]] = field(default_factory=list)
    gateway_requests: list[dict[str, Any]] = field(default_factory=list)
    completed_at: dict[str, float] = field(default_factory=dict)
    download_started_at: dict[str, float] = field(default_factory=dict)
    #: the Range header of every GET (None when there was none)
    ranges: list[str | None] = field(default_factory=list)
    #: per hash, how many bytes the next GETs send before dropping the connection
    cut_after: dict[str, list[int]] = field(default_factory=dict)
    #: per hash: (offset, seconds) — the body pauses that long after that many bytes
    stall: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: whether GETs honour Range (a 206) or ignore it (a 200 with the whole body)
    serve_ranges: bool = True
    gateway_delay: float = 0.0
    #: the kachery 2.x API key /api/findFile accepts, and the bodies it received
    api_key: str = ""
    api_requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    state: FakeState
    base: str

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> Any:
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))

    def do_GET(self) -> None:
        h = self.path.rsplit("/", 1)[-1]
        data = self.state.bucket.get(h)
        if not self.path.startswith("/download/") or data is None:
            self._json(404, {"message": "no such object"})
            return
        self.state.download_started_at[h] = time.monotonic()
        self.state.ranges.append(self.headers.get("Range"))
        if h in self.state.corrupt:
            data = data[:-1] + bytes([data[-1] ^ 1]) if data else b"x"
        start = self._range_start(len(data))
        if start is None:
            return
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._send_body(h, start, body)

    def _range_start(self, size: int) -> int | None:
        value = self.headers.get("Range")
        if not value or not self.state.serve_ranges:
            return 0
        start = int(value.removeprefix("bytes=").rstrip("-"))
        if start >= size:
            self.send_response(416)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return start

    def _send_body(self, h: str, start: int, body: bytes) -> None:
        cuts = self.state.cut_after.get(h)
        if cuts:
            self.wfile.write(body[: cuts.pop(0)])
            self.wfile.flush()
            self.close_connection = True
            return
        stall = self.state.stall.get(h)
        if stall is not None and start < stall[0]:
            self.wfile.write(body[: stall[0] - start])
            self.wfile.flush()
            time.sleep(stall[1])
            body = body[stall[0] - start:]
        with suppress(OSError):  # the client may hang up (cat | head)
            self.wfile.write(body)

    def do_POST(self) -> None:
        body = self._body()
        if self.path == "/api/gateway":
            self._gateway(body)
        elif self.path == "/api/findFile":
            self._find_file_v2(body)
        elif self.path.startswith("/r/"):
            self._resource(body)
        else:
            self._json(404, {"message": "unknown path"})

    def _gateway(self, body: dict[str, Any]) -> None:
        st = self.state
        st.gateway_requests.append(body)
        time.sleep(st.gateway_delay)
        ok = verify_signature(body["payload"], body["fromClientId"], body["signature"])
        if not ok:
            self._json(400, {"message": "bad signature"})
            return
        if st.gateway_status != 200:
            self._json(st.gateway_status, {"message": "gateway says no"})
            return
        if st.require_registered is not None and body["fromClientId"] not in st.require_registered:
            self._json(403, {"message": "client not registered"})
            return
        h = body["payload"]["hash"]
        if h in st.bucket:
            self._json(200, {"type": "findFile", "found": True, "size": len(st.bucket[h]),
                             "url": f"{self.base}/download/{h}"})
        else:
            self._json(200, {"type": "findFile", "found": False})

    def _find_file_v2(self, body: dict[str, Any]) -> None:
        """kachery 2.x: a Bearer key and a findFileRequest body."""
        st = self.state
        st.api_requests.append(body)
        if self.headers.get("Authorization") != f"Bearer {st.api_key}" or not st.api_key:
            self._json(401, {"error": "invalid API key"})
            return
        h = body["hash"]
        if h in st.bucket:
            self._json(200, {"found": True, "size": len(st.bucket[h]), "url": f"{self.base}/download/{h}",
                             "objectKey": f"sha1/{h[:2]}/{h[2:4]}/{h[4:6]}/{h}"})
        else:
            self._json(200, {"found": False})

    def _resource(self, body: dict[str, Any]) -> None:
        st = self.state
        st.resource_requests.append(body)
        code = st.resource_script.pop(0) if st.resource_script else st.resource_status
        if code != 200:
            self.send_response(code)
            raw = json.dumps({"message": f"proxy says {code}", "code": "x"}).encode()
            self.send_header("Content-Length", str(len(raw)))
            if code == 429:
                self.send_header("Retry-After", "0.1")
            self.end_headers()
            self.wfile.write(raw)
            return
        h = body["request"]["uri"][len("sha1://"):]
        upload = st.uploads.get(h)
        if upload is None:
            self._json(200, _envelope({"status": "not-found"}))
            return
        deadline = time.monotonic() + body["request"]["timeoutMsec"] / 1000
        while True:
            now = time.monotonic()
            with st.lock:
                state, done = upload.state(now)
                if state == "completed" and h not in st.bucket:
                    st.bucket[h] = upload.data
                    st.completed_at[h] = now
            if state != "running" or now >= deadline:
                break
            time.sleep(0.01)
        status: dict[str, Any] = {"status": state, "size": len(upload.data), "bytesUploaded": done}
        if state == "error":
            status["error"] = upload.fail
        self._json(200, _envelope(status))


def _envelope(status: dict[str, Any]) -> dict[str, Any]:
    return {"type": "responseToClient", "response": {"type": "fileUpload", "status": status}}


@contextmanager
def fake_stack() -> Iterator[tuple[str, FakeState]]:
    """Yields (base URL, state); gateway at the base, resource ``res1`` at ``/r/res1``."""
    state = FakeState()
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    base = f"http://127.0.0.1:{server.server_address[1]}"
    handler.base = base
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield base, state
    finally:
        server.shutdown()
        server.server_close()
