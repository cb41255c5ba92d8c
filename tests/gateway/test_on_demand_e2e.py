"""On demand end to end: the gateway's findFile asks the zone's announced resources.

Gateway, proxy and daemons are separate processes; clients get no KACHERY_RESOURCE_URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kachery_resource.identity import ClientKeys, signed_envelope

from ..servers import S3Server, wait_until
from .conftest import run_kachery_cloud
from .on_demand_stack import TTL_SEC, OnDemandStack, start_stack

KC_LOAD = """
import json, sys, kachery_cloud as kc
path = kc.load_file(sys.argv[1] if len(sys.argv) > 1 else {uri!r})
print(json.dumps({{"path": path}}))
"""


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OnDemandStack]:
    stack = start_stack(tmp_path_factory.mktemp("ondemand-local"), None)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def s3_stack(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[OnDemandStack]:
    workdir = tmp_path_factory.mktemp("ondemand-s3")
    stack = start_stack(workdir, s3_server, names=("lab-s3",), access_log=workdir / "access.log")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(params=["local", "s3"])
def stack(request: pytest.FixtureRequest) -> OnDemandStack:
    return request.getfixturevalue(f"{request.param}_stack")  # type: ignore[no-any-return]


def test_kachery_cloud_loads_cold_without_resource_url(stack: OnDemandStack, tmp_path: Path) -> None:
    """The released client, told nothing but the gateway, gets a file not in the bucket."""
    data = secrets.token_bytes(3000)
    name = next(iter(stack.daemons))
    sha1 = stack.link(data, name)
    kc_dir = tmp_path / "kc"
    kc_dir.mkdir()
    result = run_kachery_cloud(KC_LOAD.format(uri=f"sha1://{sha1}"), stack.gateway.url,
                               ClientKeys.generate(), kc_dir, tmp_path)
    assert result["path"] is not None, "kachery-cloud 0.4.10 did not get the file"
    got = Path(result["path"]).read_bytes()
    assert hashlib.sha1(got).hexdigest() == sha1 and got == data
    [line] = [x for x in stack.access_lines() if x.get("sha1") == sha1]
    assert line["endpoint"] == "findFile" and line["status"] == 200
    assert line["onDemand"] == "hit" and line["resource"].endswith(f"/r/{name}")


def test_find_file_over_http_fetches_cold(stack: OnDemandStack) -> None:
    data = secrets.token_bytes(1500)
    sha1 = stack.link(data, *stack.daemons)
    t0 = time.monotonic()
    found = stack.find(sha1)
    assert found["found"] is True, found
    assert time.monotonic() - t0 < 15
    got = stack.download(found)
    assert hashlib.sha1(got).hexdigest() == sha1 and got == data


def test_unknown_hash_is_not_found_at_once(stack: OnDemandStack) -> None:
    sha1 = hashlib.sha1(secrets.token_bytes(8)).hexdigest()
    t0 = time.monotonic()
    assert stack.find(sha1)["found"] is False
    assert time.monotonic() - t0 < 1.0
    wait_until(lambda: all(d.requests_for(sha1) == 1 for d in stack.daemons.values()), timeout=5)


def test_many_concurrent_finds_make_one_upload(stack: OnDemandStack) -> None:
    """200 findFiles at once for a hash one daemon holds: each daemon is asked once, one
    upload, all answered found."""
    data = secrets.token_bytes(1024)
    holder, *others = stack.daemons.values()
    sha1 = stack.link(data, holder.name)

    async def finds() -> list[dict[str, Any]]:
        keys = ClientKeys.generate()
        payload = {"type": "findFile", "hashAlg": "sha1", "hash": sha1, "zone": "default"}
        body = signed_envelope(keys, payload)  # one signature: the calls differ in nothing else
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            async def one() -> dict[str, Any]:
                async with session.post(f"{stack.gateway.url}/api/gateway", json=body,
                                        timeout=aiohttp.ClientTimeout(total=60)) as resp:
                    assert resp.status == 200, await resp.text()
                    return dict(await resp.json())
            return await asyncio.gather(*(one() for _ in range(200)))

    answers = asyncio.run(finds())
    assert all(a["found"] for a in answers)
    assert hashlib.sha1(stack.download(answers[0])).hexdigest() == sha1
    daemons = [holder, *others]
    wait_until(lambda: all(d.requests_for(sha1) >= 1 for d in daemons), timeout=5)
    time.sleep(0.5)
    assert [d.requests_for(sha1) for d in daemons] == [1] * len(daemons)
    assert sum(f"upload sha1://{sha1} " in line and "completed" in line
               for line in holder.process.output) == 1


def test_a_killed_daemon_changes_nothing_and_expires(local_stack: OnDemandStack) -> None:
    """Two daemons hold a file; one is SIGKILLed: the other serves. Once its announcement
    expired the gateway no longer asks it."""
    unavailable = 'kachery_gateway_on_demand_resource_requests_total{answer="unavailable"}'
    data = secrets.token_bytes(1024)
    sha1 = local_stack.link(data, "lab-a", "lab-b")
    local_stack.daemons["lab-a"].process.kill()
    found = local_stack.find(sha1)
    assert found["found"] is True and local_stack.download(found) == data
    [line] = [x for x in local_stack.access_lines() if x.get("sha1") == sha1]
    assert line["resource"].endswith("/r/lab-b")
    before = local_stack.metric(unavailable)
    assert before >= 1  # lab-a was asked, through its proxy, and did not answer
    time.sleep(TTL_SEC + 0.5)
    rows = json.loads(local_stack.cli("resources", "list", "--json"))
    assert {r["resourceUrl"].rsplit("/", 1)[-1]: r["status"] for r in rows} == {
        "lab-a": "expired", "lab-b": "live"}
    unknown = hashlib.sha1(secrets.token_bytes(8)).hexdigest()
    assert local_stack.find(unknown)["found"] is False
    assert local_stack.metric(unavailable) == before
