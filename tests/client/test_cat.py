"""`kachery-resource cat` streams: bytes reach stdout as they arrive; a closed pipe is fine."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from kachery_resource.client import ClientSettings

from .fakes import FakeState, sha1
from .test_cli import run

STALL_SEC = 6.0


def test_bytes_flow_before_the_download_ends_and_a_closed_pipe_exits_0(
    fake: tuple[str, FakeState], settings: ClientSettings
) -> None:
    base, state = fake
    data = os.urandom(2 * 2**20)
    h = sha1(data)
    state.bucket[h] = data
    state.stall[h] = (300_000, STALL_SEC)  # the bucket sends 300 kB, then pauses
    assert settings.keys is not None
    env = {**os.environ, "KACHERY_CLOUD_DIR": str(settings.store_dir), "KACHERY_GATEWAY_URL": base,
           "KACHERY_CLOUD_CLIENT_ID": settings.keys.client_id,
           "KACHERY_CLOUD_PRIVATE_KEY": settings.keys.private_key_hex}
    env.pop("KACHERY_RESOURCE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from kachery_resource.cli import main; main()", "cat",
         f"kachery:default:sha1:{h}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    got = b""
    while len(got) < 100_000:
        chunk = os.read(proc.stdout.fileno(), 65536)
        assert chunk, proc.stderr.read().decode()
        got += chunk
    # the first bytes are here while the bucket still holds back the rest
    assert time.monotonic() < state.download_started_at[h] + STALL_SEC - 1
    assert data.startswith(got)
    proc.stdout.close()  # like `head` exiting
    assert proc.wait(timeout=STALL_SEC + 20) == 0
    assert proc.stderr.read() == b""


def test_wrong_bytes_exit_non_zero_after_streaming(
    fake: tuple[str, FakeState], settings: ClientSettings, monkeypatch: pytest.MonkeyPatch,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    data = b"honest bytes" * 1000
    fake[1].bucket[sha1(data)] = data
    fake[1].corrupt.add(sha1(data))
    assert run(monkeypatch, settings, "cat", f"sha1://{sha1(data)}") == 1
    out, err = capfdbinary.readouterr()
    assert len(out) == len(data) and out != data
    assert err.decode().startswith("error: downloaded bytes hash to ") and "not " + sha1(data) in err.decode()
