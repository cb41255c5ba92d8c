"""Progress shows within half a second, in MiB/GiB only."""

from __future__ import annotations

import io
import sys
import threading
import time

import pytest
from rich.console import Console

from kachery_resource.client import ClientSettings, load_file
from kachery_resource.client.progress import Bars, RichProgress, format_bytes
from kachery_resource.messages import UploadState, UploadStatus

from .fakes import FakeState, sha1


def test_a_line_appears_within_half_a_second(
    fake: tuple[str, FakeState], settings: ClientSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    data = b"slow gateway"
    fake[1].bucket[sha1(data)] = data
    fake[1].gateway_delay = 2.0
    thread = threading.Thread(
        target=load_file, args=(f"sha1://{sha1(data)}",), kwargs={"settings": settings, "progress": True}
    )
    thread.start()
    time.sleep(0.5)
    early = capsys.readouterr().err
    thread.join(10)
    assert early == f"{sha1(data)[:10]}: looking for it\n"
    assert capsys.readouterr().err.splitlines()[-1] == f"{sha1(data)[:10]}: downloaded 0.0 MiB"


def test_bars_appear_at_once_and_speak_mib() -> None:
    out = io.StringIO()
    bars = RichProgress("abc", console=Console(file=out, force_terminal=True, width=120))
    time.sleep(0.5)
    assert "looking for abc" in out.getvalue()
    bars.upload(UploadStatus(status=UploadState.RUNNING, size=3 * 2**30, bytesUploaded=2**29))
    bars.download_started(5 * 2**20)
    bars.downloaded(2**20)
    time.sleep(0.3)
    bars.close()
    text = out.getvalue()
    assert "0.50 GiB of 3.00 GiB" in text and "1.0 MiB of 5.0 MiB" in text
    assert " MB" not in text and " GB" not in text and "KiB" not in text


@pytest.mark.parametrize(("n", "text"), [
    (0, "0.0 MiB"), (1536 * 1024, "1.5 MiB"), (2**30 - 1, "1024.0 MiB"), (2**30, "1.00 GiB"),
    (5 * 2**30 + 2**29, "5.50 GiB"),
])
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


def test_bars_leave_a_redirected_stdout_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """`load a b > paths.txt` with bars on the terminal: every path stays on stdout."""
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    bars = Bars(Console(file=io.StringIO(), force_terminal=True))
    try:
        assert sys.stdout is out
    finally:
        bars.close()
