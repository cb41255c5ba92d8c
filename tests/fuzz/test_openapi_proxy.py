"""schemathesis against the proxy's own OpenAPI document (``proxy/openapi.yaml``), on a
real ``kachery-resource proxy`` with a connected daemon: at least 1,000 generated cases,
no server error outside the documented ones, the proxy serving and traceback-free after."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from kachery_resource.proxy.app import OPENAPI_FILE

from ..proxy.conftest import client_body
from ..proxy.rawwire import tracebacks
from ..proxy.v1daemon import V1Daemon
from ..servers import ServerProcess, start_cli
from .harness import budget, run_schema

pytestmark = pytest.mark.timeout(300)

SECRET = "openapi-" + secrets.token_hex(8)
SHA = "d" * 40
# 500 is the old proxy's answer to a body naming another resource or zone (documented);
# 502/503/504 are a daemon gone, NATS gone, a wait ended
ALLOWED_5XX = {500: {"name-mismatch", "zone-mismatch"}, 502: {"resource-disconnected"},
               503: {"cluster-unavailable"}, 504: {"timeout"}}


@pytest.fixture(scope="module")
def proxy() -> Iterator[ServerProcess]:
    server = start_cli(["proxy", "--port", "0", "--max-wait-sec", "3",
                        "--max-body-bytes", "16384"], env={"PROXY_SECRET": SECRET})
    yield server
    server.stop()


def aim_at(name: str) -> Any:
    """Half the cases name the connected daemon in the path and (if a dict) the body, so
    generated bodies reach the relay rather than stopping at 'no such resource'."""
    def tweak(case: Any, pick: int) -> None:
        if "resource" not in case.path_parameters or pick % 2:
            return
        case.path_parameters["resource"] = name
        if isinstance(case.body, dict):
            case.body["resourceName"] = name
            if pick in (0, 2):
                case.body["zone"] = "default"
            if pick == 0:  # a request this v1 daemon understands
                case.body["request"] = {"type": "fileUpload", "uri": f"sha1://{SHA}",
                                        "timeoutMsec": 1000}
                case.body["timeoutMsec"] = 10000  # room for a loaded machine: not a 504
    return tweak


async def test_every_operation(proxy: ServerProcess) -> None:
    name = "good-" + secrets.token_hex(3)
    daemon = V1Daemon(proxy.url, name, SECRET, statuses={SHA: {"status": "completed", "size": 9}})
    assert await daemon.connect()
    try:
        tally = await asyncio.to_thread(run_schema, OPENAPI_FILE, proxy.url,
                                        {"*": 20, "POST /r/{resource}": 360}, ALLOWED_5XX,
                                        aim_at(name))
    finally:
        await daemon.close()
    assert tally.unexpected == [], tally.unexpected[:5]
    print(dict(tally.statuses))
    assert tally.total >= budget(350), tally.statuses
    relayed = sum(n for (label, status), n in tally.statuses.items()
                  if label.startswith("POST") and status == 200)
    assert relayed > 0 and daemon.answered >= relayed, tally.statuses  # the relay was reached
    assert daemon.violations == []
    daemon = V1Daemon(proxy.url, name, SECRET, statuses={SHA: {"status": "completed", "size": 9}})
    assert await daemon.connect()
    # still serving: a real request is relayed, and nothing is left waiting
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{proxy.url}/r/{name}", data=json.dumps(client_body(name, SHA))) as r:
            assert r.status == 200 and (await r.json())["response"]["status"]["size"] == 9
        async with s.get(f"{proxy.url}/healthz") as r:
            health = await r.json()
    await daemon.close()
    assert health["waitingRequests"] == 0, health
    assert proxy.proc.poll() is None
    assert tracebacks(proxy.text()) == []
