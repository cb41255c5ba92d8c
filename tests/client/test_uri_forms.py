"""The client takes ``kachery:ZONE:sha1:HASH[:LABEL]`` URIs too; their zone wins."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from kachery_resource.client import ClientSettings, load_file, request_file
from kachery_resource.uri import kachery_uri

from .fakes import FakeState, Upload, sha1
from .test_cli import run


def test_zone_in_the_uri_wins_over_the_settings(
    fake: tuple[str, FakeState], settings: ClientSettings
) -> None:
    _, state = fake
    data = b"in zone lab"
    state.uploads[sha1(data)] = Upload(data, duration=0.1)
    path = load_file(kachery_uri(sha1(data), "lab", "a b.dat"), settings=settings)
    assert Path(path).read_bytes() == data
    assert {r["payload"]["zone"] for r in state.gateway_requests} == {"lab"}
    assert [r["zone"] for r in state.resource_requests] == ["lab"]
    assert state.resource_requests[0]["request"]["uri"] == f"sha1://{sha1(data)}"


def test_request_file_takes_the_kachery_form(
    fake: tuple[str, FakeState], settings: ClientSettings
) -> None:
    result = request_file(f"kachery:other:sha1:{'6' * 40}", settings=settings)
    assert (result.uri, result.status) == ("sha1://" + "6" * 40, "not-found")
    assert fake[1].resource_requests[-1]["zone"] == "other"


@pytest.mark.parametrize("command", ["load", "cat", "request"])
def test_every_command_takes_the_kachery_form(
    fake: tuple[str, FakeState], settings: ClientSettings, monkeypatch: pytest.MonkeyPatch,
    capfdbinary: pytest.CaptureFixture[bytes], command: str,
) -> None:
    data = b"kachery form " + command.encode()
    fake[1].bucket[sha1(data)] = data
    elsewhere = dataclasses.replace(settings, zone="elsewhere")  # KACHERY_ZONE
    assert run(monkeypatch, elsewhere, command, f"kachery:default:sha1:{sha1(data)}:f.txt") == 0
    out = capfdbinary.readouterr().out
    if command == "cat":
        assert out == data
    elif command == "load":
        assert Path(out.decode().strip()).read_bytes() == data
    else:
        assert json.loads(out)["source"] == "bucket"
    assert {r["payload"]["zone"] for r in fake[1].gateway_requests} == {"default"}
