"""End to end with real processes: SeaweedFS ← (counting relay) ← gateway (S3 backend),
proxy, `kachery-resource share`; clients POST exactly what kachery-cloud 0.4.10 sends."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from kachery_resource.daemon.state import read_state
from kachery_resource.identity import ClientKeys
from kachery_resource.store import LocalStore

from ..servers import BIN, S3Server, ServerProcess, free_port, start_cli, wait_until
from .stack import (
    CountingRelay,
    add_client,
    bucket_bytes,
    random_file,
    request_file,
    request_until_done,
    start_daemon,
)

SECRET = "proxy-" + secrets.token_hex(8)


@dataclass
class Stack:
    gateway_url: str
    proxy_url: str
    relay: CountingRelay
    keys: ClientKeys  # the daemon's keys, registered with upload rights
    reader: ClientKeys  # a second client that only looks things up
    s3: S3Server
    prefix: str  # the zone's key prefix in the bucket


@pytest.fixture(scope="module")
def stack(s3_server: S3Server) -> Iterator[Stack]:
    relay = CountingRelay(s3_server.endpoint).start()
    prefix = f"daemon-{secrets.token_hex(4)}"
    storage = f"s3://{s3_server.bucket}/{prefix}"
    s3_env = {**s3_server.env(), "AWS_ENDPOINT_URL": s3_server.endpoint}
    keys, reader = ClientKeys.generate(), ClientKeys.generate()
    add_client(storage, keys.client_id, s3_env)
    gateway = start_cli(["gateway", "--port", "0", "--storage", storage,
                         "--s3-endpoint-url", relay.url], env=s3_server.env())
    proxy = start_cli(["proxy", "--port", "0"], env={"PROXY_SECRET": SECRET})
    try:
        yield Stack(gateway.url, proxy.url, relay, keys, reader, s3_server, prefix)
    finally:
        proxy.stop()
        gateway.stop()
        relay.stop()


@pytest.fixture
def daemon(stack: Stack, tmp_path: Path) -> Iterator[tuple[ServerProcess, LocalStore, str]]:
    name = "res-" + secrets.token_hex(4)
    proc, store_dir = start_daemon(tmp_path / "d", name, stack.proxy_url, SECRET,
                                   stack.gateway_url, stack.keys)
    try:
        yield proc, LocalStore(store_dir), proc.url
    finally:
        proc.stop()


def test_cold_requests_for_stored_and_linked_files(stack: Stack, daemon: tuple[ServerProcess, LocalStore, str],
                                                   tmp_path: Path) -> None:
    proc, store, url = daemon
    stored_sha1 = random_file(tmp_path / "in store.bin", 300_000)
    assert store.store_copy(tmp_path / "in store.bin") == stored_sha1
    linked = tmp_path / "a dir" / "linked ünïcode file.dat"
    linked_sha1 = random_file(linked, 2_500_000)
    store.link(linked)
    empty = tmp_path / "empty"
    empty_sha1 = random_file(empty, 0)
    store.link(empty)
    for sha1, size in ((stored_sha1, 300_000), (linked_sha1, 2_500_000), (empty_sha1, 0)):
        status = request_file(url, sha1)
        assert status["status"] == "completed", (status, proc.text())
        assert status["size"] == size and status["bytesUploaded"] == size
        data = bucket_bytes(stack.gateway_url, sha1, stack.reader)
        assert data is not None and len(data) == size
        # asked again: answered from the bucket, no second upload
        assert request_file(url, sha1)["status"] == "completed"
        # (the S3 gateway stores an empty file itself at initiate: no PUT then)
        assert stack.relay.puts_for(sha1) == (1 if size else 0)
    # SeaweedFS checks x-amz-checksum-sha1, so the gateway had the daemon PUT straight to the
    # content key with it (the store refused any other bytes): no staged copy, no read-back
    s3 = stack.s3.client()
    for sha1 in (stored_sha1, linked_sha1):
        key = f"{stack.prefix}/sha1/{sha1[:2]}/{sha1[2:4]}/{sha1[4:6]}/{sha1}"
        head = s3.head_object(Bucket=stack.s3.bucket, Key=key, ChecksumMode="ENABLED")
        assert head["ChecksumSHA1"] == base64.b64encode(bytes.fromhex(sha1)).decode()
    staged = s3.list_objects_v2(Bucket=stack.s3.bucket, Prefix=f"{stack.prefix}/staging/")
    assert staged.get("KeyCount") == 0, staged.get("Contents")
    # what `kachery-resource status` reads: three files served, their bytes uploaded
    state_dir = tmp_path / "d" / ".kachery-resource"
    wait_until(lambda: read_state(state_dir)["filesServed"] == 3)
    assert read_state(state_dir)["bytesUploaded"] == 2_800_000
    # the log is written in batches (within 0.2 s)
    wait_until(lambda: f"upload sha1://{linked_sha1} size=2500000 completed" in proc.text())
    wait_until(lambda: f"sha1://{stored_sha1} size=300000 → completed" in proc.text())


def test_released_kachery_cloud_client_loads_a_file_cold(
        stack: Stack, daemon: tuple[ServerProcess, LocalStore, str], tmp_path: Path) -> None:
    _proc, store, url = daemon
    sha1 = random_file(tmp_path / "for kcl.bin", 50_000)
    store.link(tmp_path / "for kcl.bin")
    client_dir = tmp_path / "client-kc"
    code = f"import kachery_cloud as kcl; print(kcl.load_file('sha1://{sha1}'))"
    env = {**os.environ, "KACHERY_CLOUD_DIR": str(client_dir), "KACHERY_GATEWAY_URL":
           stack.gateway_url, "KACHERY_RESOURCE_URL": url,
           "KACHERY_CLOUD_CLIENT_ID": stack.reader.client_id,
           "KACHERY_CLOUD_PRIVATE_KEY": stack.reader.private_key_hex}
    env.pop("KACHERY_ZONE", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    path = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    assert path and Path(path).read_bytes() == (tmp_path / "for kcl.bin").read_bytes(), out.stderr


def test_hundred_concurrent_requests_make_one_upload(
        stack: Stack, daemon: tuple[ServerProcess, LocalStore, str], tmp_path: Path) -> None:
    _proc, store, url = daemon
    sha1 = random_file(tmp_path / "popular.bin", 4_000_000)
    store.link(tmp_path / "popular.bin")
    stack.relay.put_delay = 0.5  # keep the upload running while all requests arrive
    try:
        with ThreadPoolExecutor(100) as pool:
            statuses = list(pool.map(lambda _: request_file(url, sha1, inner_ms=100), range(100)))
    finally:
        stack.relay.put_delay = 0
    assert {s["status"] for s in statuses} <= {"queued", "running", "completed"}
    assert request_until_done(url, sha1)["status"] == "completed"
    assert stack.relay.puts_for(sha1) == 1
    assert bucket_bytes(stack.gateway_url, sha1, stack.reader) is not None


def test_ten_hashes_with_limit_two_never_more_than_two_puts(
        stack: Stack, tmp_path: Path) -> None:
    name = "lim-" + secrets.token_hex(4)
    proc, store_dir = start_daemon(tmp_path / "d", name, stack.proxy_url, SECRET,
                                   stack.gateway_url, stack.keys, max_uploads=2)
    store = LocalStore(store_dir)
    hashes = []
    for i in range(10):
        hashes.append(random_file(tmp_path / f"f{i}", 200_000))
        store.link(tmp_path / f"f{i}")
    stack.relay.reset()
    stack.relay.put_delay = 0.3
    try:
        with ThreadPoolExecutor(10) as pool:
            first = list(pool.map(lambda h: request_file(proc.url, h, inner_ms=50), hashes))
        assert "queued" in {s["status"] for s in first}  # 10 jobs, 2 slots
        final = [request_until_done(proc.url, h) for h in hashes]
    finally:
        stack.relay.put_delay = 0
        proc.stop()
    assert all(s["status"] == "completed" for s in final)
    assert stack.relay.max_in_flight == 2
    assert all(stack.relay.puts_for(h) == 1 for h in hashes)


def test_changed_unreadable_deleted_and_garbage(
        stack: Stack, daemon: tuple[ServerProcess, LocalStore, str], tmp_path: Path) -> None:
    proc, store, url = daemon
    # rewritten in place: same size, old mtime restored
    path = tmp_path / "edited.bin"
    sha1 = random_file(path, 100_000)
    store.link(path)
    st = path.stat()
    path.write_bytes(secrets.token_bytes(100_000))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    status = request_file(url, sha1)
    assert status["status"] == "error" and "changed" in status["error"], status
    assert stack.relay.puts_for(sha1) == 0
    assert bucket_bytes(stack.gateway_url, sha1, stack.reader) is None
    wait_until(lambda: "stale link record" in proc.text() or "no longer" in proc.text())
    # unreadable: the record points at something that cannot be read as a file
    folder = tmp_path / "not a file"
    folder.mkdir()
    fake_sha1 = secrets.token_hex(20)
    fst = folder.stat()
    store.link_record_path(fake_sha1).parent.mkdir(parents=True, exist_ok=True)
    store.link_record_path(fake_sha1).write_text(
        f'{{"path": "{folder}", "size": {fst.st_size}, "mtime": {fst.st_mtime}, "sha1": "{fake_sha1}"}}')
    status = request_file(url, fake_sha1)
    assert status["status"] == "error" and status["error"], status
    # deleted after linking
    gone = tmp_path / "gone.bin"
    gone_sha1 = random_file(gone, 1000)
    store.link(gone)
    gone.unlink()
    assert request_file(url, gone_sha1) == {"status": "not-found"}
    # invalid URIs and garbage: answered with an error (by the proxy or the daemon)
    for bad in ("sha1://XYZ", "sha1://" + "g" * 40, "http://example.org/x"):
        name = url.rsplit("/", 1)[-1]
        resp = requests.post(url, json={"type": "requestFromClient", "resourceName": name,
                                        "zone": "default", "request": {"type": "fileUpload",
                                        "uri": bad, "timeoutMsec": 100}, "timeoutMsec": 2000},
                             timeout=10)
        assert resp.status_code in (200, 400), resp.text
        if resp.status_code == 200:
            body = resp.json()
            assert body.get("error") or body["response"]["status"]["status"] == "error"
    resp = requests.post(url, data=b"\x00garbage", timeout=10)
    assert resp.status_code == 400
    # still serving
    assert proc.proc.poll() is None
    assert request_file(url, secrets.token_hex(20)) == {"status": "not-found"}


def test_proxy_killed_and_restarted_serving_within_5s(stack: Stack, tmp_path: Path) -> None:
    port = free_port()
    args = ["proxy", "--port", str(port)]
    proxy = start_cli(args, env={"PROXY_SECRET": SECRET})
    name = "rc-" + secrets.token_hex(4)
    proc, _store = start_daemon(tmp_path / "d", name, proxy.url, SECRET, stack.gateway_url,
                                   stack.keys)
    url = proc.url
    try:
        assert request_file(url, secrets.token_hex(20)) == {"status": "not-found"}
        proxy.kill()
        time.sleep(1.5)
        proxy = start_cli(args, env={"PROXY_SECRET": SECRET})
        back = time.monotonic()

        def serving() -> bool:
            r = requests.post(url, json={"type": "requestFromClient", "resourceName": name,
                                         "zone": "default", "request": {"type": "fileUpload",
                                         "uri": "sha1://" + "0" * 40, "timeoutMsec": 100},
                                         "timeoutMsec": 2000}, timeout=5)
            return r.status_code == 200

        wait_until(serving, timeout=10, interval=0.1)
        assert time.monotonic() - back < 5
        assert proc.text().count("KACHERY_RESOURCE_URL=") == 1
    finally:
        proc.stop()
        proxy.stop()


def test_sigterm_aborts_running_upload_nothing_visible(
        stack: Stack, daemon: tuple[ServerProcess, LocalStore, str], tmp_path: Path) -> None:
    proc, store, url = daemon
    # larger than what the socket buffers hold while the relay stalls: the PUT is cut short
    # (its bytes go straight to the content key, so a PUT whose last byte had reached the
    # store would complete, verified by the store)
    sha1 = random_file(tmp_path / "big.bin", 40_000_000)
    store.link(tmp_path / "big.bin")
    stack.relay.put_delay = 3
    try:
        deadline = time.monotonic() + 10
        status = request_file(url, sha1, inner_ms=300)
        while status["status"] == "queued" and time.monotonic() < deadline:
            status = request_file(url, sha1, inner_ms=300)
        assert status["status"] == "running", status
        proc.stop(signal.SIGTERM)
        assert proc.proc.returncode == 0, proc.text()
    finally:
        stack.relay.put_delay = 0
    assert "stopped" in proc.text()
    time.sleep(3.5)  # the delayed PUT would have gone through by now
    assert bucket_bytes(stack.gateway_url, sha1, stack.reader) is None


def test_unregistered_client_is_refused(stack: Stack, tmp_path: Path) -> None:
    stranger = ClientKeys.generate()
    (tmp_path / "kachery-resource.yaml").write_text(
        f"resourceName: nobody\nproxyUrl: {stack.proxy_url}\nproxySecret: {SECRET}\n")
    env = {**os.environ, "KACHERY_CLOUD_DIR": str(tmp_path / "kc"),
           "KACHERY_GATEWAY_URL": stack.gateway_url, "KACHERY_CLOUD_CLIENT_ID": stranger.client_id,
           "KACHERY_CLOUD_PRIVATE_KEY": stranger.private_key_hex}
    env.pop("KACHERY_ZONE", None)
    out = subprocess.run([str(BIN / "kachery-resource"), "share"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 4, out
    assert f"does not know this daemon's client id {stranger.client_id}" in out.stderr
    assert "KACHERY_RESOURCE_URL" not in out.stdout


def test_files_of_a_kachery_2_local_store_are_served_verified(stack: Stack, tmp_path: Path) -> None:
    """``kachery.store_file_local`` writes ``$KACHERY_DIR/sha1/ab/cd/ef/<sha1>``: the daemon
    serves those copies too, and never uploads one whose bytes are not its hash."""
    ka_dir = tmp_path / "dot-kachery"
    good = random_file(tmp_path / "good.bin", 120_000)
    bad_bytes = os.urandom(50_000)
    bad = random_file(tmp_path / "bad.bin", 50_000)  # stored under its hash, then corrupted
    for sha1, source in ((good, tmp_path / "good.bin"), (bad, tmp_path / "bad.bin")):
        dest = ka_dir / "sha1" / sha1[:2] / sha1[2:4] / sha1[4:6] / sha1
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(source.read_bytes() if sha1 == good else bad_bytes)
    proc, _store = start_daemon(tmp_path / "d", "res-" + secrets.token_hex(4), stack.proxy_url,
                                SECRET, stack.gateway_url, stack.keys,
                                extra={"KACHERY_DIR": str(ka_dir)})
    try:
        status = request_file(proc.url, good)
        assert status["status"] == "completed", (status, proc.text())
        assert bucket_bytes(stack.gateway_url, good, stack.reader) == (tmp_path / "good.bin").read_bytes()
        status = request_until_done(proc.url, bad)
        assert status["status"] == "error", status
        assert bucket_bytes(stack.gateway_url, bad, stack.reader) is None
        wait_until(lambda: f"and the kachery 2.x store {ka_dir}" in proc.text())
    finally:
        proc.stop()
