"""Files linked on a host, fetched on a "remote" by kachery-cloud 0.4.10 and by our client.

Gateway, proxy and daemon run as separate processes; nothing is uploaded in advance.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from kachery_resource import FileNotFoundOnResource, ResourceOfflineError
from kachery_resource.client import NullProgress, load_file
from kachery_resource.messages import UploadState, UploadStatus

from ..servers import BIN
from .conftest import Stack

UNKNOWN = "sha1://" + hashlib.sha1(b"nobody has this").hexdigest()


def make_cases(root: Path, tag: str) -> list[tuple[str, Path]]:
    """(mode, path): a small linked file, an empty stored file, spaces + non-ASCII linked."""
    odd = root / f"dir with spaces {tag}" / "ünïcödé ✓ file — é.txt"
    odd.parent.mkdir(parents=True)
    small, empty = root / f"small-{tag}.txt", root / f"empty-{tag}.bin"
    small.write_bytes(f"small file {tag} ".encode() * 20)
    empty.write_bytes(b"")
    odd.write_bytes(f"non-ascii path {tag} ✓".encode())
    return [("link", small), ("store", empty), ("link", odd)]


def test_kachery_cloud_loads_linked_files_on_demand(stack: Stack, tmp_path: Path) -> None:
    cases = make_cases(tmp_path, "kc")
    uris = stack.host_add(cases)
    assert all(u.startswith("sha1://") for u in uris)
    results = stack.kachery_cloud_load([*uris, UNKNOWN])
    for (_, path), result in zip(cases, results[:-1], strict=True):
        assert result["path"] is not None, f"kachery-cloud got None for {path.name}"
        assert Path(result["path"]).read_bytes() == path.read_bytes()
    assert results[-1]["path"] is None
    assert results[-1]["sec"] < 3.5  # one poll, no 4 s sleep
    # now in the bucket: a second remote gets them without asking the daemon again
    again = stack.kachery_cloud_load(uris, name="kc-warm")
    assert [Path(r["path"]).read_bytes() for r in again] == [p.read_bytes() for _, p in cases]


def test_our_client_loads_linked_files_on_demand(stack: Stack, tmp_path: Path) -> None:
    cases = make_cases(tmp_path, "ours")
    uris = stack.host_add(cases)
    settings = stack.our_settings("ours")
    for (_, path), uri in zip(cases, uris, strict=True):
        t0 = time.monotonic()
        got = load_file(uri, settings=settings, progress=False, timeout=60)
        assert Path(got).read_bytes() == path.read_bytes()
        assert time.monotonic() - t0 < 10
    t0 = time.monotonic()
    with pytest.raises(FileNotFoundOnResource):
        load_file(UNKNOWN, settings=settings, progress=False)
    assert time.monotonic() - t0 < 2


def _big_file(path: Path, mb: int) -> Path:
    with open(path, "wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1024 * 1024))
    return path


def test_our_client_loads_a_200_mb_file(local_stack: Stack, tmp_path: Path) -> None:
    big = _big_file(tmp_path / "big ours é.bin", 200)
    [uri] = local_stack.host_add([("link", big)])
    got = Path(load_file(uri, settings=local_stack.our_settings("big"), progress=False, timeout=120))
    assert got.stat().st_size == big.stat().st_size
    assert "sha1://" + hashlib.sha1(got.read_bytes()).hexdigest() == uri.split("?")[0]


def test_kachery_cloud_loads_a_200_mb_file(local_stack: Stack, tmp_path: Path) -> None:
    big = _big_file(tmp_path / "big 200 MB.bin", 200)
    [uri] = local_stack.host_add([("link", big)])
    [result] = local_stack.kachery_cloud_load([uri], name="big")
    got = Path(result["path"])
    assert got.stat().st_size == big.stat().st_size
    assert "sha1://" + hashlib.sha1(got.read_bytes()).hexdigest() == uri.split("?")[0]


@pytest.fixture(scope="module")
def victim_file(local_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 200 MB linked file; a daemon stopped mid-upload never puts it in the bucket."""
    big = _big_file(tmp_path_factory.mktemp("victim") / "big for victim.bin", 200)
    [uri] = local_stack.host_add([("link", big)])
    return uri


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "terminated"])
def test_daemon_stopped_mid_request_means_offline(local_stack: Stack, victim_file: str,
                                                  sig: signal.Signals) -> None:
    victim = local_stack.start_daemon(f"victim-{sig.name.lower()}")
    uri = victim_file
    settings = local_stack.our_settings("victim", resource_url=victim.url)
    running = threading.Event()
    outcome: list[BaseException | str] = []

    class KillWhenRunning(NullProgress):
        def upload(self, status: UploadStatus) -> None:
            if status.status is UploadState.RUNNING:
                running.set()

    def fetch() -> None:
        try:
            # no timeout: offline fails at once (with one, the client waits for the daemon:
            # tests/interop/test_client_offline.py)
            outcome.append(load_file(uri, settings=settings, progress=KillWhenRunning(),
                                     poll_wait=0.05))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=fetch)
    thread.start()
    assert running.wait(30), "the daemon never reported the upload running"
    victim.stop(sig)
    killed = time.monotonic()
    thread.join(30)
    assert not thread.is_alive()
    assert isinstance(outcome[0], ResourceOfflineError), outcome
    assert time.monotonic() - killed < 10
    # and a fresh request is refused at once, not left hanging
    t0 = time.monotonic()
    with pytest.raises(ResourceOfflineError, match="kachery-resource share"):
        load_file(uri, settings=local_stack.our_settings("after", resource_url=victim.url),
                  progress=False)
    assert time.monotonic() - t0 < 3
    if sig == signal.SIGKILL:  # the CLI says so with exit code 5
        env = local_stack.remote_env("cli", resource_url=victim.url)
        done = subprocess.run([str(BIN / "kachery-resource"), "load", uri], capture_output=True,
                              text=True, env={**os.environ, **env}, timeout=60)
        assert done.returncode == 5, done.stderr
        assert done.stderr.startswith("error: resource 'victim-sigkill' is offline")
