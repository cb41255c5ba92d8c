"""`load URI…` / `--from FILE`: parallel fetches, one path per URI in order, worst exit code."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from kachery_resource.client import ClientSettings
from kachery_resource.client.download import partial_path
from kachery_resource.store import LocalStore

from ..servers import BIN, wait_until
from .fakes import FakeState, Upload, sha1
from .test_cli import run


def test_paths_in_order_fetched_in_parallel(
    fake: tuple[str, FakeState], settings: ClientSettings, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    state = fake[1]
    local = tmp_path / "local.txt"
    local.write_bytes(b"already here")
    h_local = LocalStore(settings.store_dir).store_copy(local)
    slow_a, slow_b = b"a" * 300_000, b"b" * 300_000
    for data in (slow_a, slow_b):
        state.bucket[sha1(data)] = data
        state.stall[sha1(data)] = (1000, 2.0)
    from_resource = b"from the resource"
    state.uploads[sha1(from_resource)] = Upload(from_resource, duration=0.2)
    listing = tmp_path / "uris.txt"
    listing.write_text(f"# wanted\n\nkachery:default:sha1:{sha1(from_resource)}:r.txt\n")
    code = run(monkeypatch, settings, "load", f"sha1://{sha1(slow_a)}", f"sha1://{h_local}",
               f"sha1://{sha1(slow_b)}", "--from", str(listing))
    assert code == 0
    paths = capsys.readouterr().out.splitlines()
    assert [Path(p).read_bytes() for p in paths] == [slow_a, b"already here", slow_b, from_resource]
    started = state.download_started_at
    assert abs(started[sha1(slow_a)] - started[sha1(slow_b)]) < 1.5  # both ran during the stall


def test_each_failure_is_named_and_the_worst_code_wins(
    fake: tuple[str, FakeState], settings: ClientSettings, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good, failing = b"good", b"failing"
    fake[1].bucket[sha1(good)] = good
    fake[1].uploads[sha1(failing)] = Upload(failing, fail="disk unreadable")
    missing = "sha1://" + "0" * 40
    stdin = io.TextIOWrapper(io.BytesIO(f"sha1://{sha1(failing)}\nsha1://{sha1(good)}\n".encode()))
    monkeypatch.setattr("sys.stdin", stdin)
    assert run(monkeypatch, settings, "load", missing, "--from", "-") == 6
    out, err = capsys.readouterr()
    lines = out.split("\n")
    assert lines[:2] == ["", ""] and Path(lines[2]).read_bytes() == good
    assert f"error: {missing}: " in err and f"error: sha1://{sha1(failing)}: " in err
    assert "disk unreadable" in err and len(err.splitlines()) == 2


def test_several_uris_need_a_directory_dest(
    fake: tuple[str, FakeState], settings: ClientSettings, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    fake[1].bucket[sha1(b"x")] = b"x"
    fake[1].bucket[sha1(b"y")] = b"y"
    uris = [f"sha1://{sha1(b'x')}?label=x.txt", f"sha1://{sha1(b'y')}?label=y.txt"]
    assert run(monkeypatch, settings, "load", *uris, "--dest", str(tmp_path / "file")) == 1
    assert "with several URIs --dest must be an existing directory" in capsys.readouterr().err
    assert fake[1].gateway_requests == []
    assert run(monkeypatch, settings, "load", *uris, "--dest", str(tmp_path)) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "x.txt"), str(tmp_path / "y.txt")]
    assert (tmp_path / "y.txt").read_bytes() == b"y"
    clash = [f"sha1://{sha1(b'x')}?label=same.txt", f"sha1://{sha1(b'y')}?label=same.txt"]
    assert run(monkeypatch, settings, "load", *clash, "--dest", str(tmp_path)) == 1
    assert "two different files would be written to" in capsys.readouterr().err
    assert not (tmp_path / "same.txt").exists()


def test_no_uri_at_all_is_a_usage_error(
    settings: ClientSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(monkeypatch, settings, "load") == 2
    assert "give at least one URI, or --from FILE" in capsys.readouterr().err


def test_ctrl_c_stops_at_once_and_keeps_partial_files_to_resume(
    fake: tuple[str, FakeState], settings: ClientSettings, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C during `load A B` does not wait for the running downloads (here stalled for a
    minute): exit 130 at once, and the next run resumes each from its partial file."""
    state = fake[1]
    files = [bytes([i]) * 300_000 for i in (1, 2)]
    for data in files:
        state.bucket[sha1(data)] = data
        state.stall[sha1(data)] = (200_000, 60.0)
    assert settings.keys is not None
    env = {**os.environ, "KACHERY_CLOUD_DIR": str(settings.store_dir),
           "KACHERY_GATEWAY_URL": settings.gateway_url, "KACHERY_ZONE": settings.zone,
           "KACHERY_RESOURCE_URL": str(settings.resource_url),
           "KACHERY_CLOUD_CLIENT_ID": settings.keys.client_id,
           "KACHERY_CLOUD_PRIVATE_KEY": settings.keys.private_key_hex,
           "PYTHONFAULTHANDLER": "1"}  # SIGABRT prints every thread's stack
    store = LocalStore(settings.store_dir)
    partials = [partial_path(store, sha1(data)) for data in files]
    # as in a terminal, Ctrl-C reaches load: a shell running the tests in the background
    # ignores SIGINT, and an ignored signal stays ignored in children (CI hung on it)
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen([str(BIN / "kachery-resource"), "load", "--no-progress",
                                 *(f"sha1://{sha1(data)}" for data in files)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finally:
        signal.signal(signal.SIGINT, ignored)
    try:
        wait_until(lambda: all(p.exists() and p.stat().st_size > 0 for p in partials), timeout=30)
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # show where it hung
            proc.send_signal(signal.SIGABRT)
            pytest.fail("load did not exit within 30 s of Ctrl-C; its threads:\n"
                        + proc.communicate(timeout=10)[1].decode(errors="replace")[-6000:])
        assert time.monotonic() - t0 < 10  # the stall lasts 60 s
    finally:
        proc.kill()
        proc.communicate()
    assert code == 130
    kept = [p.stat().st_size for p in partials]
    assert all(0 < size < 300_000 for size in kept), kept
    state.stall.clear()
    state.ranges.clear()
    assert run(monkeypatch, settings, "load", *(f"sha1://{sha1(data)}" for data in files)) == 0
    assert [Path(p).read_bytes() for p in capsys.readouterr().out.split()] == files
    assert sorted(state.ranges, key=str) == sorted((f"bytes={size}-" for size in kept), key=str)
