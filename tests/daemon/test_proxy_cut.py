"""Issue #6: a proxy cut mid-upload does not stop the upload.

Real processes: a gateway (local directory, or SeaweedFS), a :class:`FaultRelay` that
throttles and counts the bytes on their way to the storage, a proxy on a fixed port and
``kachery-resource share``. A client asks for a file; once bytes are flowing the proxy
is killed (``kill -9``). The upload's bytes never go through the proxy, so the storage
keeps receiving them while the proxy is down. The proxy comes back on the same port, the
daemon reconnects by itself, and the client's next request shows the same upload job
(same timestamps, progress at least what the storage already received, never back to
0), then ``completed`` — every byte sent exactly once and the object verified by sha1.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from kachery_resource.store import LocalStore

from ..servers import S3Server, ServerProcess, free_port, start_cli, wait_until
from .fault_relay import FaultRelay
from .mp_stack import MIB, MpStack, gateway_stack, start_mp_daemon
from .stack import random_file, request_file

PART_SIZE = 8 * MIB
MULTIPART = {"multipartThreshold": 16 * MIB, "multipartPartSize": PART_SIZE,
             "multipartParallelParts": 2, "uploadStallSec": 20}
SINGLE_PUT = {"multipartThreshold": 1024 * MIB}  # the same file size goes as one PUT
SIZE = 56 * MIB + 321
# bytes/s the relay lets through per PUT (2 parts run at once): each upload takes about 7 s
RATE = {"multipart": 4 * MIB, "single-put": 8 * MIB}


@dataclass
class Storage:
    """A gateway and the byte-counting relay on the path of the uploaded bytes."""

    stack: MpStack  # its proxy_url is filled in per test (the proxy is ours to kill)
    relay: FaultRelay


@contextmanager
def storage_stack(kind: str, workdir: Path, s3: S3Server | None = None) -> Iterator[Storage]:
    """Like ``mp_stack`` but without a proxy (each test starts and kills its own)."""
    with gateway_stack(kind, workdir, s3) as stack:
        yield Storage(stack, stack.relay)


@pytest.fixture(scope="module")
def local_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storage]:
    with storage_stack("local", tmp_path_factory.mktemp("cut-local")) as st:
        yield st


@pytest.fixture(scope="module")
def s3_storage(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[Storage]:
    with storage_stack("s3", tmp_path_factory.mktemp("cut-s3"), s3_server) as st:
        yield st


class Proxy:
    """``kachery-resource proxy`` on a fixed port, so it can be killed and started again."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: ServerProcess | None = None

    def start(self) -> None:
        self.proc = start_cli(["proxy", "--port", str(self.port)],
                              env={"PROXY_SECRET": self.secret})
        assert self.proc.url == self.url

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        assert self.proc.proc.returncode is not None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def try_status(resource_url: str, sha1: str) -> dict[str, Any] | None:
    """The upload status through the proxy, or None while the proxy or the daemon is away."""
    name = resource_url.rsplit("/", 1)[-1]
    body = {"type": "requestFromClient", "resourceName": name, "zone": "default",
            "request": {"type": "fileUpload", "uri": f"sha1://{sha1}", "timeoutMsec": 100},
            "timeoutMsec": 5000}
    try:
        resp = requests.post(resource_url, json=body, timeout=10)
    except requests.ConnectionError:
        return None
    if resp.status_code in (404, 502):  # daemon not (yet) connected to this proxy
        return None
    assert resp.status_code == 200, resp.text
    status: dict[str, Any] = resp.json()["response"]["status"]
    return status


@pytest.mark.timeout(180)
def test_multipart_upload_survives_a_proxy_kill_local(local_storage: Storage,
                                                      tmp_path: Path) -> None:
    cut_mid_upload(local_storage, tmp_path, "multipart")


@pytest.mark.timeout(180)
def test_single_put_upload_survives_a_proxy_kill_local(local_storage: Storage,
                                                       tmp_path: Path) -> None:
    cut_mid_upload(local_storage, tmp_path, "single-put")


@pytest.mark.timeout(180)
def test_multipart_upload_survives_a_proxy_kill_seaweedfs(s3_storage: Storage,
                                                          tmp_path: Path) -> None:
    cut_mid_upload(s3_storage, tmp_path, "multipart")


def cut_mid_upload(storage: Storage, tmp_path: Path, path: str) -> None:
    """Request a file, kill the proxy once bytes flow, restart it, follow the upload."""
    relay = storage.relay
    relay.reset()
    settings = MULTIPART if path == "multipart" else SINGLE_PUT
    data = tmp_path / "data" / "random.bin"
    sha1 = random_file(data, SIZE)
    workdir = tmp_path / "daemon"
    LocalStore(workdir / "kc").link(data, sha1)
    proxy = Proxy("cut-" + secrets.token_hex(8))
    stack = storage.stack
    stack.proxy_url, stack.secret = proxy.url, proxy.secret
    relay.rate = RATE[path]
    daemon: ServerProcess | None = None
    try:
        proxy.start()
        daemon = start_mp_daemon(stack, workdir, "cut-" + secrets.token_hex(3), settings)
        # 1. the upload starts and bytes flow
        deadline = time.monotonic() + 60
        while True:
            before = request_file(daemon.url, sha1, inner_ms=100, outer_ms=5000)
            assert before["status"] in ("queued", "running"), before
            if before.get("bytesUploaded", 0) > 0 and relay.put_bytes > 0:
                break
            assert time.monotonic() < deadline, before
            time.sleep(0.05)
        # 2. the proxy dies; the storage keeps receiving the file's bytes
        proxy.kill()
        at_kill = relay.put_bytes
        assert at_kill < SIZE, "the upload finished before the cut: slow the relay down"
        assert try_status(daemon.url, sha1) is None  # the proxy is really gone
        wait_until(lambda: relay.put_bytes >= at_kill + 2 * MIB, timeout=20)
        time.sleep(1.0)  # the daemon retries a refused proxy meanwhile
        assert daemon.proc.poll() is None
        # 3. the proxy comes back on the same port; the daemon reconnects by itself
        at_restart = relay.put_bytes
        proxy.start()
        after: dict[str, Any] = {}

        def reconnected() -> bool:
            status = try_status(daemon.url, sha1)
            if status is not None:
                after.update(status)
            return status is not None

        wait_until(reconnected, timeout=20, interval=0.1)
        # the same job, its progress carried on while the proxy was away (not from 0)
        assert after["status"] in ("running", "completed"), after
        assert after["timestampRequested"] == before["timestampRequested"]
        assert after["timestampStarted"] == before["timestampStarted"]
        assert after["bytesUploaded"] >= max(at_restart, before["bytesUploaded"]), \
            (after, at_restart, before)
        assert after["bytesUploaded"] > before["bytesUploaded"]
        # 4. it completes, every byte was sent once, the object verifies
        deadline = time.monotonic() + 120
        done = after
        while done["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, done
            done = request_file(daemon.url, sha1, inner_ms=10000, outer_ms=15000)
            assert done["bytesUploaded"] >= after["bytesUploaded"], done
        assert done["status"] == "completed", done
        assert done["bytesUploaded"] == SIZE
        assert done["timestampStarted"] == before["timestampStarted"]
        completed = rf"upload sha1://{sha1} size={SIZE} completed"
        wait_until(lambda: re.search(completed, daemon.text()), timeout=10)  # output is piped
        # the reconnection may be logged after the completion (an upload that ended while
        # the proxy was away) and reach the pipe after the test saw the status
        wait_until(lambda: daemon.text().count("connected to proxy") >= 2, timeout=10)
        log = daemon.text()
        assert len(re.findall(completed, log)) == 1, log
        assert log.count("connected to proxy") == 2, log  # once before the cut, once after
        if path == "multipart":  # one multipart upload was initiated, never a second
            assert log.count(f"multipart upload of sha1://{sha1}") == 1, log
        assert "Traceback" not in log
    finally:
        relay.rate = 0
        if daemon is not None:
            daemon.stop()
        proxy.stop()
    # no second upload: exactly the file's bytes reached the storage, in the expected PUTs
    assert relay.put_bytes == SIZE and relay.ok_put_bytes == SIZE
    assert relay.puts == (-(-SIZE // PART_SIZE) if path == "multipart" else 1)
    assert stack.download_sha1(sha1) == (sha1, SIZE)
    assert stack.leftovers() == []
