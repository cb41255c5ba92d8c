"""On demand end to end: the gateway's findFile asks the zone's announced resources.

Gateway, proxy and daemons are separate processes; clients get no KACHERY_RESOURCE_URL:
kachery-cloud 0.4.10, kachery 2.0.3, curl, a browser page and our own client (with a
kachery 2.x API key) each load a file only a daemon has.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from kachery_resource.identity import ClientKeys, signed_envelope

from ..servers import BIN, S3Server, wait_until
from .browser import run_page
from .conftest import run_kachery_cloud
from .helpers import store_v2
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
    stack = start_stack(workdir, s3_server, access_log=workdir / "access.log")
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


KA_LOAD = """
import hashlib, json, sys, kachery as ka
path = ka.load_file(sys.argv[1])
print(json.dumps({"sha1": None if path is None else hashlib.sha1(open(path, "rb").read()).hexdigest()}))
"""


def client_env(stack: OnDemandStack, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user with an empty home: only the gateway is set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KACHERY")}
    return {**env, "KACHERY_BASE_URL": stack.gateway.url, "KACHERY_DIR": str(home / "kachery"),
            "KACHERY_CLOUD_DIR": str(home / "kachery-cloud"), **extra}


def served_by(stack: OnDemandStack, sha1: str) -> str:
    """The resource the gateway's access log names for the findFile of ``sha1``."""
    [line] = [x for x in stack.access_lines() if x.get("sha1") == sha1]
    assert line["onDemand"] == "hit", line
    return str(line["resource"])


def test_kachery2_loads_cold(stack: OnDemandStack, tmp_path: Path) -> None:
    """The released kachery 2.0.3, told only KACHERY_BASE_URL, loads a file only a daemon has."""
    data = secrets.token_bytes(2500)
    sha1 = stack.link(data, *stack.daemons)
    done = subprocess.run([sys.executable, "-c", KA_LOAD, f"kachery:default:sha1:{sha1}"],
                          capture_output=True, text=True, env=client_env(stack, tmp_path),
                          cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"sha1": sha1}
    assert "/r/lab-" in served_by(stack, sha1)


def test_curl_loads_cold(stack: OnDemandStack, tmp_path: Path) -> None:
    """The curl binary: POST /api/findFile for a file only a daemon has, then GET its url."""
    curl = shutil.which("curl")
    assert curl, "curl is missing: apt-get install curl"
    data = secrets.token_bytes(1800)
    sha1 = stack.link(data, *stack.daemons)
    body = json.dumps({"type": "findFileRequest", "hashAlg": "sha1", "hash": sha1, "zoneName": "default"})
    found = subprocess.run([curl, "-sS", "--fail-with-body", "-H", "Content-Type: application/json",
                            "--data", body, f"{stack.gateway.url}/api/findFile"],
                           capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stdout + found.stderr
    answer = json.loads(found.stdout)
    assert answer["found"] is True and answer["size"] == len(data), answer
    out = tmp_path / "file"
    got = subprocess.run([curl, "-sS", "--fail", "-o", str(out), answer["url"]],
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    assert hashlib.sha1(out.read_bytes()).hexdigest() == sha1
    assert "/r/lab-" in served_by(stack, sha1)


PAGE = """<!doctype html><html><body><script>
const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
async function main() {
  const r = await fetch(%(gateway)s + "/api/findFile", {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(
      {type: "findFileRequest", hashAlg: "sha1", hash: %(sha1)s, zoneName: "default"})});
  const found = await r.json();
  const bytes = await (await fetch(found.url)).arrayBuffer();
  return {status: r.status, found: found.found, size: bytes.byteLength,
          sha1: hex(await crypto.subtle.digest("SHA-1", bytes))};
}
main().catch((e) => ({error: String(e)})).then((out) =>
  fetch("/result", {method: "POST", body: JSON.stringify(out)}));
</script></body></html>
"""


def test_browser_page_loads_cold(local_stack: OnDemandStack, tmp_path: Path) -> None:
    """A page from another loopback origin finds and downloads a file only a daemon has,
    and checks its sha1 with SubtleCrypto."""
    data = secrets.token_bytes(40_000)
    sha1 = local_stack.link(data, "lab-b")
    page = PAGE % {"gateway": json.dumps(local_stack.gateway.url), "sha1": json.dumps(sha1)}
    out, _ = run_page(page, tmp_path / "profile", local_stack.gateway.url)
    assert {k: out[k] for k in ("status", "found", "size", "sha1")} == {
        "status": 200, "found": True, "size": len(data), "sha1": sha1}
    assert served_by(local_stack, sha1).endswith("/r/lab-b")


def our_load(stack: OnDemandStack, home: Path, uri: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "kachery-resource"), "load", uri], capture_output=True, text=True,
                          env=client_env(stack, home, **env), stdin=subprocess.DEVNULL, timeout=120)


def test_our_client_with_an_api_key(local_stack: OnDemandStack, tmp_path: Path) -> None:
    """KACHERY_API_KEY makes our client use the kachery 2.x API: a private zone loads with
    a reader's key, a wrong key is exit code 4 naming the fix, no key is the kachery-cloud
    API with a throw-away key (refused by a private zone, saying how to get keys); in a
    public zone a key also loads a file only a daemon has."""
    stack = local_stack
    uploader = stack.add_user("private-uploader", "--zone", "private", "--upload")
    reader = stack.add_user("private-reader", "--zone", "private")
    data = secrets.token_bytes(5000)
    uri = f"kachery:private:sha1:{store_v2(stack.gateway.url, uploader, data, 'private')}"
    done = our_load(stack, tmp_path / "reader", uri, KACHERY_API_KEY=reader)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).read_bytes() == data
    wrong = our_load(stack, tmp_path / "wrong", uri, KACHERY_API_KEY="not-a-key")
    assert wrong.returncode == 4, wrong.stderr
    assert "HTTP 401" in wrong.stderr and wrong.stderr.count("check KACHERY_API_KEY") == 1
    assert "gateway users reset-key NAME --zone private" in wrong.stderr
    none = our_load(stack, tmp_path / "none", uri, KACHERY_GATEWAY_URL=stack.gateway.url)
    assert none.returncode == 4, none.stderr
    assert "/api/gateway" in none.stderr and "HTTP 403" in none.stderr
    assert "zone 'private' does not allow download without registered keys" in none.stderr
    assert "kachery-resource init" in none.stderr and "clients add <CLIENT_ID> --zone private" in none.stderr
    assert "users add NAME --zone private" in none.stderr  # or a kachery 2.x key
    cold = secrets.token_bytes(3000)
    sha1 = stack.link(cold, "lab-a")
    key = stack.add_user("public-reader")
    done = our_load(stack, tmp_path / "cold", f"sha1://{sha1}", KACHERY_API_KEY=key)
    assert done.returncode == 0, done.stderr
    assert hashlib.sha1(Path(done.stdout.strip()).read_bytes()).hexdigest() == sha1
    assert served_by(stack, sha1).endswith("/r/lab-a")


def test_a_private_zone_loads_cold_with_a_key(local_stack: OnDemandStack, tmp_path: Path) -> None:
    """A daemon of a zone without public download: a findFile without a key is refused
    before any resource is asked; kachery 2.0.3 and our client, each with a reader's key,
    load files only that daemon has."""
    stack = local_stack
    stack.cli("clients", "add", stack.keys.client_id, "--zone", "private", "--upload")
    daemon = stack.start_daemon("lab-private", zone="private")
    try:
        data, ours = secrets.token_bytes(2200), secrets.token_bytes(2300)
        sha1, our_sha1 = stack.link(data, "lab-private"), stack.link(ours, "lab-private")
        reader = stack.add_user("cold-reader", "--zone", "private")
        find = {"type": "findFileRequest", "hashAlg": "sha1", "hash": sha1, "zoneName": "private"}
        anonymous = requests.post(f"{stack.gateway.url}/api/findFile", json=find, timeout=60)
        assert anonymous.status_code == 401, anonymous.text
        done = subprocess.run([sys.executable, "-c", KA_LOAD, f"kachery:private:sha1:{sha1}"],
                              capture_output=True, text=True, cwd=tmp_path, stdin=subprocess.DEVNULL,
                              env=client_env(stack, tmp_path / "ka", KACHERY_API_KEY=reader), timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout.strip().splitlines()[-1]) == {"sha1": sha1}
        wait_until(lambda: daemon.requests_for(sha1) == 1, timeout=5)  # its log comes a bit later
        assert daemon.requests_for(sha1) == 1  # asked for the keyed findFile only
        loaded = our_load(stack, tmp_path / "ours", f"kachery:private:sha1:{our_sha1}",
                          KACHERY_API_KEY=reader)
        assert loaded.returncode == 0, loaded.stderr
        assert Path(loaded.stdout.strip()).read_bytes() == ours
        assert served_by(stack, our_sha1).endswith("/r/lab-private")
        h = our_sha1
        assert (stack.workdir / "bucket" / "private" / "sha1" / h[:2] / h[2:4] / h[4:6] / h).is_file()
    finally:
        daemon.process.stop()
        del stack.daemons["lab-private"]


def test_a_killed_daemon_changes_nothing_and_expires(stack: OnDemandStack) -> None:
    """Two daemons hold a file; one is SIGKILLed: the other serves. Once its announcement
    expired the gateway no longer asks it. (Last: it leaves each stack one daemon.)"""
    unavailable = 'kachery_gateway_on_demand_resource_requests_total{answer="unavailable"}'
    data = secrets.token_bytes(1024)
    sha1 = stack.link(data, "lab-a", "lab-b")
    stack.daemons["lab-a"].process.kill()
    found = stack.find(sha1)
    assert found["found"] is True and stack.download(found) == data
    [line] = [x for x in stack.access_lines() if x.get("sha1") == sha1]
    assert line["resource"].endswith("/r/lab-b")
    before = stack.metric(unavailable)
    assert before >= 1  # lab-a was asked, through its proxy, and did not answer
    time.sleep(TTL_SEC + 0.5)
    rows = json.loads(stack.cli("resources", "list", "--json"))
    assert {r["resourceUrl"].rsplit("/", 1)[-1]: r["status"] for r in rows} == {
        "lab-a": "expired", "lab-b": "live"}
    unknown = hashlib.sha1(secrets.token_bytes(8)).hexdigest()
    assert stack.find(unknown)["found"] is False
    assert stack.metric(unavailable) == before
