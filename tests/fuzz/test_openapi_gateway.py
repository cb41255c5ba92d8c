"""schemathesis against the gateway's OpenAPI document (``gateway/openapi.yaml``), on a
real ``kachery-resource gateway`` over a local directory. Some cases are made to pass the
credential checks, so generated values reach the handlers: gateway calls re-signed by a
registered uploader with a fresh timestamp, kachery 2.x calls with a user's API key and a
good work token, object URLs signed with the zone's URL
secret, registrations with a valid signature. No server error outside the documented
ones (502 storage_unavailable, 503 storage_busy); the gateway serving and
traceback-free after."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from kachery_resource.gateway.app import OPENAPI_FILE
from kachery_resource.gateway.signed_urls import UrlSigner
from kachery_resource.identity import ClientKeys
from kachery_resource.uri import is_sha1_hex

from ..gateway.conftest import GatewayProcess, envelope, run_cli
from ..gateway.test_api_v2 import work_token
from ..servers import cli_server
from .harness import budget, run_schema

pytestmark = pytest.mark.timeout(300)

ALLOWED_5XX = {502: {"storage_unavailable"}, 503: {"storage_busy"}}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    storage = ["--storage", str(tmp_path_factory.mktemp("gw") / "storage")]
    with cli_server(["gateway", "--port", "0", *storage]) as server:
        yield GatewayProcess(server, storage, {})


V2_PATHS = ("/api/findFile", "/api/initiateFileUpload", "/api/finalizeFileUpload")


def make_v2_valid(case: Any, api_key: str, pick: int) -> None:
    """Give a kachery 2.x case the user's key, zone default and (initiate) a good work
    token for its hash, so its values reach the handler."""
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {api_key}"}
    body = case.body
    if isinstance(body, dict) and pick < 2:
        body["zoneName"] = "default"
        if pick == 0 and not is_sha1_hex(str(body.get("hash"))):
            body["hashAlg"], body["hash"] = "sha1", hashlib.sha1(str(body).encode()).hexdigest()
        if isinstance(body.get("hash"), str) and case.operation.path == "/api/initiateFileUpload":
            body["workToken"] = work_token(body["hash"])


def make_tweak(base: str, keys: ClientKeys, signer: UrlSigner, api_key: str) -> Any:
    def tweak(case: Any, pick: int) -> None:
        path = case.operation.path
        if path in V2_PATHS and pick < 4:
            make_v2_valid(case, api_key, pick)
        elif path == "/api/gateway" and pick < 4 and isinstance(case.body, dict) \
                and isinstance(case.body.get("payload"), dict):
            payload = {**case.body["payload"], "timestamp": int(time.time() * 1000)}
            if pick < 2:
                payload["zone"] = "default"
            case.body = {**envelope(keys, payload, zone=None), **(
                {} if pick else {"githubUserId": None})}
        elif path == "/files/{zone}/{key}" and pick < 4:
            params = case.path_parameters
            if pick < 3:
                params["zone"] = "default"
            key = str(params.get("key", "x"))
            method = case.method.upper()
            max_size = 64 if method == "PUT" else None
            url = signer.url(base, method, str(params["zone"]), key, 60, max_size)
            case.query = dict(q.split("=", 1) for q in url.split("?", 1)[1].split("&"))
            params["key"] = key
        elif path == "/registerClient/{client_id}" and pick < 3:
            case.path_parameters["client_id"] = keys.client_id
            case.query = {**(case.query or {}), "signature": keys.sign({"type": "addClient"})}
    return tweak


def test_every_operation(gateway: GatewayProcess) -> None:
    keys = ClientKeys.generate()
    gateway.add_client(keys, "--upload")
    added = run_cli("users", "add", "fuzz", "--upload", *gateway.storage_args)
    assert added.exit_code == 0, added.output
    api_key = added.stdout.strip().splitlines()[-1]
    root = Path(gateway.storage_args[1])
    signer = UrlSigner.from_secret_file(next(root.rglob(".kachery-gateway-secret*")))
    tally = run_schema(OPENAPI_FILE, gateway.url,
                       {"*": 20, "POST /api/gateway": 160, "PUT /files/{zone}/{key}": 60,
                        "GET /files/{zone}/{key}": 40, "GET /registerClient/{client_id}": 40,
                        **{f"POST {p}": 60 for p in V2_PATHS}},
                       ALLOWED_5XX, make_tweak(gateway.url, keys, signer, api_key))
    assert tally.unexpected == [], tally.unexpected[:5]
    print(dict(tally.statuses))
    assert tally.total >= budget(300), tally.statuses
    ok_calls = tally.statuses["POST /api/gateway", 200]
    assert ok_calls > 5, tally.statuses  # signed calls reached the handlers
    for path in V2_PATHS[:2]:  # keyed calls too (a finalize needs an upload before it)
        assert tally.statuses[f"POST {path}", 200] > 0, tally.statuses
    assert tally.statuses["POST /api/finalizeFileUpload", 400] > 0, tally.statuses
    assert tally.statuses["PUT /files/{zone}/{key}", 200] + tally.statuses[
        "PUT /files/{zone}/{key}", 403] > 0
    # still serving: a signed call and the info route answer
    r = requests.post(f"{gateway.url}/api/gateway", timeout=10, json=envelope(
        keys, {"type": "findFile", "hashAlg": "sha1", "hash": "e" * 40}))
    assert r.status_code == 200 and r.json() == {"type": "findFile", "found": False}
    assert requests.get(f"{gateway.url}/api/info", timeout=10).ok
    assert gateway.server.proc.poll() is None
    assert "Traceback" not in gateway.server.text(), gateway.server.text()[-3000:]
