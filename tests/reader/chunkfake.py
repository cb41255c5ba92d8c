"""A stand-in for the proxy + daemon + gateway chunk requests, for the reader's checks.

Until the gateway serves the chunk requests (``findChunks``; branch ``chunksgw``), the
reader's checks are tested against this: it answers ``/api/info``, ``fileRanges`` and
``fileUpload`` on ``/r/res``, and ``findFile``, ``findChunks``, ``getClientInfo`` on
``/api/gateway``, and serves the list, the chunks and the whole file. Each test sets what
it breaks (a forged list, an unregistered signer, a tampered chunk, ...). The end-to-end
tests (test_chunks_e2e.py) run the real processes.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kachery_resource.chunking import ChunkList, chunk_size_for, num_chunks
from kachery_resource.identity import ClientKeys


@dataclass
class ChunkFake:
    data: bytes
    keys: ClientKeys = field(default_factory=ClientKeys.generate)
    registered: bool = True
    request_types: list[str] = field(default_factory=lambda: ["fileUpload", "fileRanges"])
    ranges_status: str = "ready"  # or unavailable / unsupported (400 unsupported-request)
    whole: bool = False  # the whole file is in the bucket
    list_doc: bytes | None = None  # None: the true list signed by ``keys``
    tampered: dict[int, int] = field(default_factory=dict)  # chunk -> bad answers left
    asked: list[dict[str, Any]] = field(default_factory=list)  # resource requests
    chunk_gets: list[int] = field(default_factory=list)
    expired: int = 0  # this many chunk GETs answer 403 (an expired signed URL)
    finds: int = 0  # findChunks calls
    old_gateway: bool = False  # refuses findChunks' includePending (before it existed)
    pending_finds: int = 0  # findChunks calls with includePending
    url: str = ""

    @property
    def sha1(self) -> str:
        return hashlib.sha1(self.data).hexdigest()

    @property
    def chunk_size(self) -> int:
        return chunk_size_for(len(self.data))

    def chunk(self, i: int) -> bytes:
        return self.data[i * self.chunk_size:(i + 1) * self.chunk_size]

    def true_list(self) -> ChunkList:
        n = num_chunks(len(self.data), self.chunk_size)
        return ChunkList(self.sha1, len(self.data), self.chunk_size,
                         "".join(hashlib.sha1(self.chunk(i)).hexdigest() for i in range(n)))

    def document(self) -> bytes:
        return self.list_doc if self.list_doc is not None else self.true_list().signed(
            self.keys, "default")

    # -- answers ------------------------------------------------------------------------
    def resource(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        inner = body["request"]
        self.asked.append(inner)
        if inner["type"] == "fileUpload":
            self.whole = True
            return 200, {"type": "responseToClient", "response": {
                "type": "fileUpload", "status": {"status": "completed", "size": len(self.data)}}}
        if self.ranges_status == "unsupported":
            return 400, {"code": "unsupported-request", "message": "no fileRanges here"}
        if self.ranges_status != "ready":
            return 200, {"type": "responseToClient",
                         "response": {"type": "fileRanges", "status": self.ranges_status}}
        size, cs = len(self.data), self.chunk_size
        indices = sorted({i for offset, length in inner["ranges"]
                          for i in range(offset // cs,
                                         min(num_chunks(size, cs), -(-(offset + length) // cs)))})
        return 200, {"type": "responseToClient", "response": {
            "type": "fileRanges", "status": "ready", "size": size, "chunkSize": cs,
            "chunks": [{"index": i, "status": "completed"} for i in indices]}}

    def gateway(self, payload: dict[str, Any]) -> dict[str, Any]:
        kind = payload["type"]
        if kind == "findFile":
            return ({"found": True, "url": f"{self.url}/whole", "size": len(self.data)}
                    if self.whole else {"found": False})
        if kind == "getClientInfo":
            return {"found": self.registered and payload["clientId"] == self.keys.client_id}
        assert kind == "findChunks", kind
        self.finds += 1
        self.pending_finds += bool(payload.get("includePending"))
        if self.whole:
            return {"found": True, "wholeFile": True, "url": f"{self.url}/whole",
                    "size": len(self.data)}
        doc = self.document()
        return {"found": True, "size": len(self.data), "chunkSize": self.chunk_size,
                "listUrl": f"{self.url}/list", "listSha1": hashlib.sha1(doc).hexdigest(),
                "chunks": {str(i): f"{self.url}/chunk/{i}" for i in payload["indices"]}}

    def get(self, path: str, range_header: str | None) -> tuple[int, bytes]:
        if path == "/api/info":
            return 200, json.dumps({"resourceRequestTypes": self.request_types}).encode()
        if path == "/list":
            return 200, self.document()
        if path.startswith("/chunk/"):
            i = int(path.split("?")[0].rsplit("/", 1)[1])
            self.chunk_gets.append(i)
            if self.expired > 0:
                self.expired -= 1
                return 403, b"<Error><Code>AccessDenied</Code></Error>"
            data = self.chunk(i)
            if self.tampered.get(i, 0) > 0:
                self.tampered[i] -= 1
                data = bytes([data[0] ^ 1]) + data[1:]
            return 200, data
        if path == "/whole" and range_header:
            lo, hi = (int(v) for v in range_header.split("=")[1].split("-"))
            return 206, self.data[lo:hi + 1]
        return 404, b"{}"

    def start(self) -> ThreadingHTTPServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, first: int = 0) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {first}-{first + len(body) - 1}"
                                                      f"/{len(fake.data)}")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                status, body = fake.get(self.path, self.headers.get("Range"))
                first = int(self.headers["Range"].split("=")[1].split("-")[0]) if status == 206 else 0
                self._send(status, body, first)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/api/gateway" and fake.old_gateway and "includePending" in body["payload"]:
                    self._send(400, json.dumps({"error": "invalid_request",
                                                "message": "extra field includePending"}).encode())
                elif self.path == "/api/gateway":
                    self._send(200, json.dumps(fake.gateway(body["payload"])).encode())
                else:
                    status, answer = fake.resource(body)
                    self._send(status, json.dumps(answer).encode())

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server
