"""Real processes for the daemon's end-to-end tests: gateway (S3 backend on SeaweedFS),
proxy, daemon — plus a small counting HTTP relay in front of SeaweedFS that counts the
presigned PUTs (uploads) and how many run at once."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from aiohttp import web

from kachery_resource.identity import ClientKeys, signed_envelope

from ..servers import BIN, BackgroundApp, ServerProcess, start_cli

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate"}


@dataclass
class CountingRelay:
    """Forwards every request to ``upstream`` unchanged (Host kept, so SigV4 still holds);
    counts presigned PUTs per object key and the most that were in flight at once."""

    upstream: str
    put_delay: float = 0.0
    puts: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    url: str = ""
    _app: BackgroundApp | None = None

    def reset(self) -> None:
        self.puts.clear()
        self.max_in_flight = 0

    def puts_for(self, sha1: str) -> int:
        return sum(n for key, n in self.puts.items() if sha1 in key)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        presigned_put = request.method == "PUT" and "X-Amz-Signature" in request.query
        if presigned_put:
            self.puts[request.path] = self.puts.get(request.path, 0) + 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if presigned_put and self.put_delay:
                await asyncio.sleep(self.put_delay)
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
            data: Any = request.content if request.body_exists else None
            assert self._app is not None and self._app.session is not None
            async with self._app.session.request(
                request.method, self.upstream + request.path_qs, headers=headers, data=data,
                allow_redirects=False, auto_decompress=False,
            ) as resp:
                body = await resp.read()
                drop = HOP_BY_HOP if request.method == "HEAD" else HOP_BY_HOP | {"content-length"}
                out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in drop}
                return web.Response(status=resp.status, body=body or None, headers=out_headers)
        finally:
            if presigned_put:
                self.in_flight -= 1

    def start(self) -> CountingRelay:
        self._app = BackgroundApp(self._handle)
        self.url = self._app.start()
        return self

    def stop(self) -> None:
        assert self._app is not None
        self._app.stop()



def add_client(storage: str, client_id: str, env: dict[str, str]) -> None:
    subprocess.run([str(BIN / "kachery-resource"), "gateway", "clients", "add", client_id,
                    "--storage", storage, "--upload", "--download"],
                   env={**os.environ, **env}, check=True, capture_output=True, timeout=60)


def start_daemon(workdir: Path, name: str, proxy_url: str, secret: str, gateway_url: str,
                 keys: ClientKeys, *, max_uploads: int = 2, extra: dict[str, str] | None = None
                 ) -> tuple[ServerProcess, Path]:
    """Write a config for ``name`` in ``workdir`` and start ``kachery-resource share``."""
    workdir.mkdir(parents=True, exist_ok=True)
    store = workdir / "kc"
    (workdir / "kachery-resource.yaml").write_text(
        f"resourceName: {name}\nmaxConcurrentUploads: {max_uploads}\n"
        f"proxyUrl: {proxy_url}\nproxySecret: {secret}\n")
    env = {"KACHERY_CLOUD_DIR": str(store), "KACHERY_GATEWAY_URL": gateway_url,
           "KACHERY_CLOUD_CLIENT_ID": keys.client_id,
           "KACHERY_CLOUD_PRIVATE_KEY": keys.private_key_hex, **(extra or {})}
    env.pop("KACHERY_ZONE", None)
    return start_cli(["share"], env=env, cwd=workdir, ready=r"KACHERY_RESOURCE_URL=(\S+)"), store


def request_file(resource_url: str, sha1_or_uri: str, inner_ms: int = 5000,
                 outer_ms: int = 10000) -> dict[str, Any]:
    """POST exactly what kachery-cloud 0.4.10 sends; return ``response.status``."""
    uri = sha1_or_uri if "://" in sha1_or_uri else f"sha1://{sha1_or_uri}"
    name = resource_url.rstrip("/").rsplit("/", 1)[-1]
    body = {"type": "requestFromClient", "resourceName": name, "zone": "default",
            "request": {"type": "fileUpload", "uri": uri, "timeoutMsec": inner_ms},
            "timeoutMsec": outer_ms}
    resp = requests.post(resource_url, json=body, timeout=outer_ms / 1000 + 30)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["type"] == "responseToClient" and not data.get("error"), data
    assert data["response"]["type"] == "fileUpload"
    status: dict[str, Any] = data["response"]["status"]
    return status


def request_until_done(resource_url: str, sha1: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = request_file(resource_url, sha1)
        if status["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return status


def bucket_bytes(gateway_url: str, sha1: str, keys: ClientKeys) -> bytes | None:
    """What the gateway serves for ``sha1`` (None if not found); checks the hash."""
    payload = {"type": "findFile", "hashAlg": "sha1", "hash": sha1, "zone": "default"}
    resp = requests.post(f"{gateway_url}/api/gateway", json=signed_envelope(keys, payload),
                         timeout=30)
    assert resp.status_code == 200, resp.text
    found = resp.json()
    if not found.get("found"):
        return None
    data = requests.get(found["url"], timeout=60).content
    assert hashlib.sha1(data).hexdigest() == sha1
    return data


def random_file(path: Path, size: int) -> str:
    """Write ``size`` fresh random bytes; return their sha1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = secrets.token_bytes(size)
    path.write_bytes(data)
    return hashlib.sha1(data).hexdigest()
