"""With a timeout, an offline or restarting resource is waited for, said once."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from kachery_resource import ResourceOfflineError
from kachery_resource.client import ClientSettings, load_file, request_file

from .fakes import FakeState, Upload, sha1
from .test_cli import run


def test_a_resource_that_comes_back_is_waited_for(
    fake: tuple[str, FakeState], settings: ClientSettings, caplog: pytest.LogCaptureFixture
) -> None:
    data = b"after a restart"
    fake[1].uploads[sha1(data)] = Upload(data, duration=0.1)
    fake[1].resource_script = [404, 502, 503]  # gone, restarting, back
    with caplog.at_level(logging.WARNING, logger="kachery_resource.client"):
        path = load_file(f"sha1://{sha1(data)}", settings=settings, timeout=30)
    assert Path(path).read_bytes() == data
    waits = [r.getMessage() for r in caplog.records if "waiting up to 30 s" in r.getMessage()]
    assert len(waits) == 1 and "offline" in waits[0]
    assert len(fake[1].resource_requests) == 4


def test_a_resource_that_stays_offline_fails_when_the_timeout_ends(
    fake: tuple[str, FakeState], settings: ClientSettings
) -> None:
    fake[1].resource_status = 404
    t0 = time.monotonic()
    with pytest.raises(ResourceOfflineError, match="did not come back within the 2 s timeout") as info:
        load_file("sha1://" + "9" * 40, settings=settings, timeout=2)
    assert 1.5 < time.monotonic() - t0 < 5
    assert info.value.exit_code == 5 and len(fake[1].resource_requests) >= 3


def test_without_a_timeout_offline_fails_at_once(
    fake: tuple[str, FakeState], settings: ClientSettings, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake[1].resource_script = [404]
    assert run(monkeypatch, settings, "load", "sha1://" + "a" * 40) == 5
    assert "waiting" not in capsys.readouterr().err
    assert len(fake[1].resource_requests) == 1


def test_request_says_offline_at_once(fake: tuple[str, FakeState], settings: ClientSettings) -> None:
    fake[1].resource_status = 502
    t0 = time.monotonic()
    with pytest.raises(ResourceOfflineError, match="kachery-resource share"):
        request_file("sha1://" + "b" * 40, settings=settings)
    assert time.monotonic() - t0 < 2 and len(fake[1].resource_requests) == 1
