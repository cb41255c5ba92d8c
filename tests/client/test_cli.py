"""`kachery-resource load / request / cat`: output and exit codes (in-process, fake servers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kachery_resource.cli import main
from kachery_resource.client import ClientSettings
from kachery_resource.store import LocalStore

from .fakes import FakeState, Upload, sha1


def run(monkeypatch: pytest.MonkeyPatch, settings: ClientSettings, *args: str,
        ) -> int:
    monkeypatch.setenv("KACHERY_CLOUD_DIR", str(settings.store_dir))
    monkeypatch.setenv("KACHERY_GATEWAY_URL", settings.gateway_url)
    monkeypatch.setenv("KACHERY_RESOURCE_URL", str(settings.resource_url))
    monkeypatch.setenv("KACHERY_ZONE", settings.zone)
    assert settings.keys is not None
    monkeypatch.setenv("KACHERY_CLOUD_CLIENT_ID", settings.keys.client_id)
    monkeypatch.setenv("KACHERY_CLOUD_PRIVATE_KEY", settings.keys.private_key_hex)
    monkeypatch.setattr("sys.argv", ["kachery-resource", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_load_prints_the_path(fake: tuple[str, FakeState], settings: ClientSettings,
                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                              tmp_path: Path) -> None:
    data = b"hello cli"
    fake[1].uploads[sha1(data)] = Upload(data, duration=0.2)
    dest = tmp_path / "out.txt"
    assert run(monkeypatch, settings, "load", f"sha1://{sha1(data)}", "--dest", str(dest)) == 0
    assert capsys.readouterr().out.strip() == str(dest)
    assert dest.read_bytes() == data
    assert run(monkeypatch, settings, "load", f"sha1://{sha1(data)}") == 0
    assert capsys.readouterr().out.strip() == str(LocalStore(settings.store_dir).copy_path(sha1(data)))


def test_cat_writes_the_bytes(fake: tuple[str, FakeState], settings: ClientSettings,
                              monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    data = bytes(range(256)) * 10
    fake[1].bucket[sha1(data)] = data
    assert run(monkeypatch, settings, "cat", f"sha1://{sha1(data)}") == 0
    assert capfdbinary.readouterr().out == data


def test_request_prints_status_json(fake: tuple[str, FakeState], settings: ClientSettings,
                                    monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = b"q" * 50
    fake[1].uploads[sha1(data)] = Upload(data, duration=0.1)
    assert run(monkeypatch, settings, "request", f"sha1://{sha1(data)}", "--wait", "2") == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"uri": f"sha1://{sha1(data)}", "source": "resource", "status": "completed",
                   "size": 50, "bytesUploaded": 50}
    assert run(monkeypatch, settings, "request", "sha1://" + "7" * 40) == 3
    assert json.loads(capsys.readouterr().out)["status"] == "not-found"


@pytest.mark.parametrize(("setup", "code"), [
    ("invalid-uri", 2), ("not-found", 3), ("gateway", 4), ("offline", 5), ("upload-error", 6),
    ("timeout", 7),
])
def test_exit_codes(fake: tuple[str, FakeState], settings: ClientSettings,
                    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                    setup: str, code: int) -> None:
    state = fake[1]
    data = setup.encode()
    uri = f"sha1://{sha1(data)}"
    args = ["load", uri]
    if setup == "invalid-uri":
        args = ["load", "sha1://nothex"]
    elif setup == "gateway":
        state.gateway_status = 500
    elif setup == "offline":
        state.resource_status = 404
    elif setup == "upload-error":
        state.uploads[sha1(data)] = Upload(data, fail="disk unreadable")
    elif setup == "timeout":
        state.uploads[sha1(data)] = Upload(data, duration=30)
        args += ["--timeout", "0.3"]
    assert run(monkeypatch, settings, *args) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
