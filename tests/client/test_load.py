"""The client's fetch order, long-wait loop, integrity check and errors (fake servers)."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest

from kachery_resource import (
    ConfigError,
    FileNotFoundOnResource,
    GatewayError,
    IntegrityError,
    InvalidUriError,
    ResourceOfflineError,
    TimeoutError_,
    UploadFailedError,
)
from kachery_resource.client import ClientSettings, NullProgress, load_file, request_file
from kachery_resource.config import DEFAULT_GATEWAY_URL
from kachery_resource.messages import UploadStatus
from kachery_resource.store import LocalStore
from tests.servers import free_port

from .fakes import FakeState, Upload, sha1


def test_local_store_copy_needs_no_network(kc_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(b"local bytes")
    h = LocalStore(kc_dir).store_copy(src)
    dead = f"http://127.0.0.1:{free_port()}"
    settings = ClientSettings(kc_dir, dead, "default", dead + "/r/x", None)
    path = load_file(f"sha1://{h}?label=a.txt", settings=settings)
    assert Path(path).read_bytes() == b"local bytes"
    assert path == str(LocalStore(kc_dir).copy_path(h))


def test_linked_file_is_returned_in_place(kc_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "dir with space" / "dåta.bin"
    src.parent.mkdir()
    src.write_bytes(b"linked")
    h = LocalStore(kc_dir).link(src)
    dead = f"http://127.0.0.1:{free_port()}"
    settings = ClientSettings(kc_dir, dead, "default", None, None)
    assert load_file(f"sha1://{h}", settings=settings) == str(src)


def test_gateway_hit_downloads_verifies_and_caches(
    fake: tuple[str, FakeState], settings: ClientSettings, tmp_path: Path
) -> None:
    _, state = fake
    data = os.urandom(3 * 1024 * 1024 + 7)
    state.bucket[sha1(data)] = data
    dest = tmp_path / "out.bin"
    assert load_file(f"sha1://{sha1(data)}", dest, settings=settings) == str(dest)
    assert dest.read_bytes() == data
    cached = LocalStore(settings.store_dir).copy_path(sha1(data))
    assert cached.read_bytes() == data
    assert state.resource_requests == []
    # the second load is local: no gateway call
    n = len(state.gateway_requests)
    assert load_file(f"sha1://{sha1(data)}", settings=settings) == str(cached)
    assert len(state.gateway_requests) == n


def test_corrupt_download_is_rejected_and_not_cached(
    fake: tuple[str, FakeState], settings: ClientSettings
) -> None:
    _, state = fake
    data = b"honest bytes"
    state.bucket[sha1(data)] = data
    state.corrupt.add(sha1(data))
    with pytest.raises(IntegrityError):
        load_file(f"sha1://{sha1(data)}", settings=settings)
    parent = LocalStore(settings.store_dir).copy_path(sha1(data)).parent
    assert not parent.exists() or list(parent.iterdir()) == []


def test_findfile_payload_is_signed_with_the_clients_keys(
    fake: tuple[str, FakeState], settings: ClientSettings
) -> None:
    _, state = fake
    data = b"x"
    state.bucket[sha1(data)] = data
    load_file(f"sha1://{sha1(data)}", settings=settings)
    sent = state.gateway_requests[0]
    assert settings.keys is not None
    assert sent["fromClientId"] == settings.keys.client_id
    assert {k: v for k, v in sent["payload"].items() if k != "timestamp"} == {
        "type": "findFile", "hashAlg": "sha1", "hash": sha1(data), "zone": "default"}


def test_without_keys_an_ephemeral_key_works_for_public_zones(
    fake: tuple[str, FakeState], settings: ClientSettings
) -> None:
    _, state = fake
    state.bucket[sha1(b"pub")] = b"pub"
    anonymous = dataclasses.replace(settings, keys=None)
    assert Path(load_file(f"sha1://{sha1(b'pub')}", settings=anonymous)).read_bytes() == b"pub"


def test_without_keys_a_private_zone_says_how_to_create_them(
    fake: tuple[str, FakeState], settings: ClientSettings
) -> None:
    _, state = fake
    state.require_registered = set()
    anonymous = dataclasses.replace(settings, keys=None)
    with pytest.raises(GatewayError, match="kachery-resource init") as info:
        load_file(f"sha1://{sha1(b'p')}", settings=anonymous)
    assert info.value.exit_code == 4


def test_cold_fetch_uses_long_waits_and_downloads_at_once(
    fake: tuple[str, FakeState], settings: ClientSettings
) -> None:
    _, state = fake
    data = os.urandom(100_000)
    h = sha1(data)
    state.uploads[h] = Upload(data, duration=1.2)
    seen: list[UploadStatus] = []

    class Recorder(NullProgress):
        def upload(self, status: UploadStatus) -> None:
            seen.append(status)

    t0 = time.monotonic()
    path = load_file(f"sha1://{h}", settings=settings, progress=Recorder())
    assert Path(path).read_bytes() == data
    assert time.monotonic() - t0 < 3
    # one long wait covered the whole upload: no 4-second sleep loop
    assert len(state.resource_requests) == 1
    request = state.resource_requests[0]
    assert request["request"] == {"type": "fileUpload", "uri": f"sha1://{h}", "timeoutMsec": 20000}
    assert request["timeoutMsec"] == 25000
    # exactly the v1 fields: the old proxy validates strictly
    assert set(request) == {"type", "resourceName", "zone", "request", "timeoutMsec"}
    assert request["type"] == "requestFromClient"
    assert request["resourceName"] == "res1" and request["zone"] == "default"
    assert state.download_started_at[h] - state.completed_at[h] < 0.5
    assert seen[-1].status.value == "completed"


def test_short_waits_report_bytes_uploaded(
    fake: tuple[str, FakeState], settings: ClientSettings
) -> None:
    _, state = fake
    data = os.urandom(10_000)
    state.uploads[sha1(data)] = Upload(data, duration=1.0)
    seen: list[tuple[str, int | None]] = []

    class Recorder(NullProgress):
        def upload(self, status: UploadStatus) -> None:
            seen.append((status.status.value, status.bytesUploaded))

        def download_started(self, size: int | None) -> None:
            seen.append(("download", size))

    load_file(f"sha1://{sha1(data)}", settings=settings, progress=Recorder(), poll_wait=0.3)
    running = [b for s, b in seen if s == "running"]
    assert len(running) >= 2 and running == sorted(running) and 0 < running[0] < len(data)
    assert seen[-2:] == [("completed", len(data)), ("download", len(data))]


def test_not_found_on_resource(fake: tuple[str, FakeState], settings: ClientSettings) -> None:
    t0 = time.monotonic()
    with pytest.raises(FileNotFoundOnResource) as info:
        load_file("sha1://" + "0" * 40, settings=settings)
    assert info.value.exit_code == 3
    assert time.monotonic() - t0 < 2
    assert len(fake[1].resource_requests) == 1


def test_no_resource_url_means_not_found(fake: tuple[str, FakeState], settings: ClientSettings) -> None:
    with pytest.raises(FileNotFoundOnResource, match="KACHERY_RESOURCE_URL is not set"):
        load_file("sha1://" + "1" * 40, settings=dataclasses.replace(settings, resource_url=None))


def test_upload_error_is_reported(fake: tuple[str, FakeState], settings: ClientSettings) -> None:
    data = b"will fail"
    fake[1].uploads[sha1(data)] = Upload(data, fail="file changed since it was linked")
    with pytest.raises(UploadFailedError, match="file changed") as info:
        load_file(f"sha1://{sha1(data)}", settings=settings)
    assert info.value.exit_code == 6


@pytest.mark.parametrize("status", [404, 503])
def test_resource_offline(fake: tuple[str, FakeState], settings: ClientSettings, status: int) -> None:
    fake[1].resource_status = status
    with pytest.raises(ResourceOfflineError, match="kachery-resource share") as info:
        load_file("sha1://" + "2" * 40, settings=settings)
    assert info.value.exit_code == 5


def test_busy_proxy_is_retried(fake: tuple[str, FakeState], settings: ClientSettings) -> None:
    data = b"after a busy spell"
    fake[1].uploads[sha1(data)] = Upload(data)
    fake[1].resource_script = [429, 504, 429]
    assert Path(load_file(f"sha1://{sha1(data)}", settings=settings)).read_bytes() == data
    assert len(fake[1].resource_requests) == 4


def test_a_daemon_that_never_answers_is_offline(
    fake: tuple[str, FakeState], settings: ClientSettings
) -> None:
    fake[1].resource_status = 504
    with pytest.raises(ResourceOfflineError, match="has not answered 3 requests"):
        load_file("sha1://" + "8" * 40, settings=settings)


def test_unreachable_proxy_is_offline(fake: tuple[str, FakeState], settings: ClientSettings) -> None:
    dead = f"http://127.0.0.1:{free_port()}/r/res1"
    with pytest.raises(ResourceOfflineError, match=r"cannot reach the proxy at \S+: connection refused; "
                       "check KACHERY_RESOURCE_URL and that the proxy is running$"):
        load_file("sha1://" + "3" * 40, settings=dataclasses.replace(settings, resource_url=dead))


@pytest.mark.parametrize("url", ["notaurl", "http://127.0.0.1:9", "ftp://host/r/res1"])
def test_a_resource_url_that_is_not_one_is_a_config_error(settings: ClientSettings, url: str) -> None:
    with pytest.raises(ConfigError, match="is not a resource URL; expected <proxy url>/r/<resource "
                                          "name>") as info:
        load_file("sha1://" + "3" * 40, settings=dataclasses.replace(settings, resource_url=url))
    assert info.value.exit_code == 2


def test_overall_timeout(fake: tuple[str, FakeState], settings: ClientSettings) -> None:
    data = b"slow"
    fake[1].uploads[sha1(data)] = Upload(data, duration=30)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError_, match=r"within 0\.8 s") as info:
        load_file(f"sha1://{sha1(data)}", settings=settings, timeout=0.8)
    assert info.value.exit_code == 7
    assert time.monotonic() - t0 < 2.5


def test_gateway_refusal(fake: tuple[str, FakeState], settings: ClientSettings) -> None:
    fake[1].gateway_status = 500
    with pytest.raises(GatewayError, match="gateway says no"):
        load_file("sha1://" + "4" * 40, settings=settings)


def test_unreachable_gateway(settings: ClientSettings) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(GatewayError, match="KACHERY_GATEWAY_URL"):
        load_file("sha1://" + "5" * 40, settings=dataclasses.replace(settings, gateway_url=dead))


@pytest.mark.parametrize("uri", ["sha1://abc", "/etc/passwd", "sha1://" + "A" * 40, ""])
def test_invalid_uri(settings: ClientSettings, uri: str) -> None:
    with pytest.raises(InvalidUriError):
        load_file(uri, settings=settings)


def test_request_file_reports_each_source(
    fake: tuple[str, FakeState], settings: ClientSettings, tmp_path: Path
) -> None:
    _, state = fake
    src = tmp_path / "l.txt"
    src.write_bytes(b"local")
    h_local = LocalStore(settings.store_dir).store_copy(src)
    assert request_file(f"sha1://{h_local}", settings=settings).to_json() == {
        "uri": f"sha1://{h_local}", "source": "local", "status": "completed", "size": 5,
        "path": str(LocalStore(settings.store_dir).copy_path(h_local))}
    state.bucket[sha1(b"bkt")] = b"bkt"
    assert request_file(f"sha1://{sha1(b'bkt')}", settings=settings).source == "bucket"
    data = b"r" * 1000
    state.uploads[sha1(data)] = Upload(data, duration=5)
    result = request_file(f"sha1://{sha1(data)}", settings=settings)
    assert (result.source, result.status, result.size) == ("resource", "running", 1000)
    assert state.resource_requests[-1]["request"]["timeoutMsec"] == 1000
    assert request_file("sha1://" + "6" * 40, settings=settings).status == "not-found"
    no_res = dataclasses.replace(settings, resource_url=None)
    assert request_file("sha1://" + "6" * 40, settings=no_res).to_json() == {
        "uri": "sha1://" + "6" * 40, "source": None, "status": "not-found"}


def test_settings_from_env(kc_dir: Path) -> None:
    s = ClientSettings.from_env({"KACHERY_CLOUD_DIR": str(kc_dir)})
    assert (s.gateway_url, s.zone, s.resource_url, s.keys) == (DEFAULT_GATEWAY_URL, "default", None, None)
    s = ClientSettings.from_env({"KACHERY_CLOUD_DIR": str(kc_dir), "KACHERY_GATEWAY_URL": "http://g/",
                                 "KACHERY_ZONE": "z", "KACHERY_RESOURCE_URL": "http://p/r/n"})
    assert (s.gateway_url, s.zone, s.resource_url) == ("http://g", "z", "http://p/r/n")


def test_progress_is_lines_when_stderr_is_not_a_terminal(
    fake: tuple[str, FakeState], settings: ClientSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    _, state = fake
    data = os.urandom(3 * 2**20)
    h = sha1(data)
    state.uploads[h] = Upload(data, duration=1.0)
    got = load_file(f"sha1://{h}", settings=settings, progress=True, poll_wait=0.3)
    assert Path(got).read_bytes() == data
    lines = capsys.readouterr().err.splitlines()
    label = h[:10]
    assert lines[0] == f"{label}: looking for it"
    assert lines[1].startswith(f"{label}: running on the resource ") and lines[1].endswith(" of 3.0 MiB")
    assert f"{label}: completed on the resource 3.0 MiB of 3.0 MiB" in lines
    assert lines[-2:] == [f"{label}: downloading 0.0 MiB of 3.0 MiB", f"{label}: downloaded 3.0 MiB"]
    assert "\x1b" not in "".join(lines)  # no terminal control codes in a log
