"""A gateway process: its access log, /metrics, and one line (no traceback) for a client
that goes away mid-upload."""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import time
from urllib.parse import urlsplit

import requests

from kachery_resource.identity import ClientKeys

from ..servers import wait_until
from .conftest import GatewayProcess, envelope


def gateway_call(url: str, keys: ClientKeys, payload: dict[str, object]) -> dict[str, object]:
    resp = requests.post(f"{url}/api/gateway", json=envelope(keys, payload), timeout=30)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def cut_put(url: str, size: int, sent: bytes) -> None:
    """Start a PUT of ``size`` bytes, send ``sent``, then reset the connection."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "", parts.port or 80)) as sock:
        sock.sendall(f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: x\r\n"
                     f"Content-Length: {size}\r\n\r\n".encode() + sent)
        time.sleep(0.3)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def test_access_log_metrics_and_a_cut_upload(local_gateway: GatewayProcess) -> None:
    keys = ClientKeys.generate()
    local_gateway.add_client(keys, "--upload")
    data = secrets.token_bytes(500_000)
    sha1 = hashlib.sha1(data).hexdigest()
    initiate = {"type": "initiateFileUpload", "size": len(data), "hashAlg": "sha1", "hash": sha1}
    target = gateway_call(local_gateway.url, keys, initiate)
    cut_put(str(target["signedUploadUrl"]), len(data), data[:1000])
    server = local_gateway.server
    wait_until(lambda: "went away" in server.text(), timeout=10)
    assert "Traceback" not in server.text()
    # the same upload, whole; a wrong one is counted as a verification failure
    assert requests.put(str(target["signedUploadUrl"]), data=data, timeout=30).status_code == 200
    gateway_call(local_gateway.url, keys, {"type": "finalizeFileUpload", "hashAlg": "sha1",
                                           "hash": sha1, "size": len(data),
                                           "objectKey": target["objectKey"]})
    bad = gateway_call(local_gateway.url, keys, {**initiate, "hash": "0" * 40})
    requests.put(str(bad["signedUploadUrl"]), data=data, timeout=30)
    refused = requests.post(f"{local_gateway.url}/api/gateway", timeout=30, json=envelope(keys, {
        "type": "finalizeFileUpload", "hashAlg": "sha1", "hash": "0" * 40, "size": len(data),
        "objectKey": bad["objectKey"]}))
    assert refused.status_code == 400
    metrics = requests.get(f"{local_gateway.url}/metrics", timeout=10).text
    assert 'kachery_gateway_requests_total{endpoint="finalizeFileUpload",status="200"} 1.0' in metrics
    assert 'kachery_gateway_requests_total{endpoint="/files/{zone}/{key}",status="499"} 1.0' in metrics
    assert "kachery_gateway_verification_failures_total 1.0" in metrics
    lines = [json.loads(x) for x in server.output if x.startswith("{")]
    finalize = next(x for x in lines if x.get("endpoint") == "finalizeFileUpload")
    assert finalize["client"] == keys.client_id and finalize["status"] == 200
    assert {"method", "path", "bytes", "durationMs", "ts"} <= set(finalize)
    put = [x for x in lines if x["method"] == "PUT" and x["status"] == 200]
    assert put and put[0]["received"] == len(data)

