"""`kachery-resource gateway` refuses bad flags, configs and storages clearly, before serving."""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from aiohttp import web
from click.testing import CliRunner

from kachery_resource import servers
from kachery_resource.errors import ConfigError
from kachery_resource.gateway.app import SETTINGS_KEY, sweep_unfinished_uploads
from kachery_resource.gateway.cli import clients, gateway
from kachery_resource.gateway.settings import load_settings
from kachery_resource.gateway.zones import open_zones

from ..servers import BIN, S3Server, free_port
from .conftest import run_cli


@pytest.fixture(autouse=True)
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[web.Application]:
    """Instead of serving (forever), record the app and stop; run in tmp_path."""
    apps: list[web.Application] = []

    async def serve(app: web.Application, *args: Any, **kwargs: Any) -> None:
        apps.append(app)
        raise AssertionError("the gateway started serving")

    monkeypatch.setattr(servers, "serve", serve)
    monkeypatch.chdir(tmp_path)
    return apps


def refused(*args: str) -> str:
    """Run ``gateway ARGS``; assert it stopped with a ConfigError (exit 2); return its message."""
    result = run_cli(*args)
    assert isinstance(result.exception, ConfigError), (result.exception, result.output)
    assert result.exception.exit_code == 2
    return str(result.exception)


def test_port_out_of_range(tmp_path: Path) -> None:
    for port in ("70000", "-1"):
        result = run_cli("--port", port, "--storage", str(tmp_path / "s"))
        assert result.exit_code == 2, result.output
        assert f"{port} is not in the range 0<=x<=65535" in result.output


@pytest.mark.parametrize("storage", ["ftp://x", "gs://bucket/p", "http://host/dir"])
def test_storage_with_another_scheme(tmp_path: Path, storage: str) -> None:
    message = refused("--port", "0", "--storage", storage)
    assert message.startswith(f"invalid --storage {storage}: ")
    assert "a local directory (DIR or file:///DIR) or s3://BUCKET[/PREFIX]" in message
    assert list(tmp_path.iterdir()) == []  # no ./ftp:/x directory
    assert "needs a bucket" in refused("--port", "0", "--storage", "s3://")


def test_storage_that_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for storage in ("/dev/null", str(tmp_path / "file")):
        message = refused("--port", "0", "--storage", storage)
        assert f"cannot use {storage} as the gateway's storage directory" in message
        assert "it exists and is not a directory" in message
    assert "a parent of it is a file" in refused("--port", "0", "--storage", str(tmp_path / "file" / "sub"))
    assert "is not a directory" in refused("clients", "list", "--storage", "/dev/null")


@pytest.mark.parametrize("url", ["notaurl", "ftp://host", "http://", "https:///path", "http://h:99999"])
def test_public_url_must_be_http_with_a_host(tmp_path: Path, url: str) -> None:
    message = refused("--port", "0", "--storage", str(tmp_path / "s"), "--public-url", url)
    assert message == (f"invalid --public-url {url}: must be an http:// or https:// URL with a host, "
                       "e.g. https://gateway.example.org")
    ok = load_settings(storage=str(tmp_path / "s"), overrides={"publicUrl": "https://gw.example.org:8443"})
    assert ok.public_url == "https://gw.example.org:8443"


def test_validation_errors_are_one_line_each(tmp_path: Path) -> None:
    message = refused("--port", "0", "--storage", str(tmp_path / "s"), "--timestamp-window", "-1")
    assert message == "invalid --timestamp-window -1: must be a number greater than 0"
    config = tmp_path / "zones.yaml"
    config.write_text("zones: {default: {allowPublicDownlod: false}}\n")
    message = refused("--port", "0", "--config", str(config))
    assert "\n" not in message and "pydantic" not in message
    assert message.startswith(f"unknown key zones.default.allowPublicDownlod (in gateway config {config}); "
                              "known keys there: allowPublicDownload, ")
    config.write_text("timestampWindowSec: 0\nmaxBodyBytes: ten\nstorage: gs://b\n")
    lines = refused("--port", "0", "--config", str(config)).splitlines()
    assert lines == [
        "3 problems in the gateway settings:",
        f"  invalid storage gs://b (in gateway config {config}): gs:// storage is not supported; "
        "give a local directory (DIR or file:///DIR) or s3://BUCKET[/PREFIX]",
        f"  invalid timestampWindowSec 0 (in gateway config {config}): must be a number greater than 0",
        f"  invalid maxBodyBytes ten (in gateway config {config}): must be a whole number at least 1024",
    ]


def test_timestamp_window_flag_overrides_only_when_given(tmp_path: Path,
                                                        served: list[web.Application]) -> None:
    config = tmp_path / "zones.yaml"
    config.write_text(f"storage: {tmp_path / 's'}\ntimestampWindowSec: 10\n")
    run_cli("--port", "0", "--config", str(config))
    run_cli("--port", "0", "--config", str(config), "--timestamp-window", "7")
    run_cli("--port", "0", "--storage", str(tmp_path / "s"))
    assert [app[SETTINGS_KEY].timestamp_window_sec for app in served] == [10, 7, 125]


def test_clients_commands_say_which_storage(tmp_path: Path) -> None:
    storage = tmp_path / "default-storage"
    listed = run_cli("clients", "list", env={"KACHERY_GATEWAY_STORAGE": str(storage)})
    assert listed.exit_code == 0, listed.output
    assert listed.stderr == f"zone default: local directory {storage}\n"
    assert listed.stdout == "no clients in zone default\n"
    listed = run_cli("clients", "list", "--json", "--storage", str(tmp_path / "other"))
    assert listed.stderr == f"zone default: local directory {tmp_path / 'other'}\n"
    assert listed.stdout == "[]\n"


def test_clients_add_without_storage_writes_where_the_gateway_serves(
        tmp_path: Path, served: list[web.Application]) -> None:
    env = {"HOME": str(tmp_path / "home"), "KACHERY_GATEWAY_STORAGE": ""}
    added = run_cli("clients", "add", "ab" * 32, "--upload", env=env)
    assert added.exit_code == 0, added.output
    default = tmp_path / "home" / ".kachery-resource" / "gateway"
    assert added.stdout.endswith(f"(written to local directory {default})\n")
    assert (default / "clients" / ("ab" * 32)).is_file()
    run_cli("--port", "0", env=env)  # the gateway without --storage serves that directory
    assert served[-1][SETTINGS_KEY].zone_storage("default") == str(default)


def test_help_texts() -> None:
    for name in ("add", "list", "remove"):
        zone = next(p for p in clients.commands[name].params if p.name == "zone")
        assert isinstance(zone, click.Option) and zone.help and "zone" in zone.help
    texts = {" ".join(args): " ".join(CliRunner().invoke(gateway, [*args, "--help"], terminal_width=1000,
                                                      max_content_width=1000).output.split())
             for args in ([], ["clients", "add"], ["clients", "list"], ["clients", "remove"])}
    for name, flat in texts.items():
        assert "(default" not in flat and "default:" in flat, name
        without = re.sub(r"\[default: [^\]]*\]", "", flat).replace("'default'", "")
        assert "default" not in without, (name, without)
    flat = texts[""]
    for shown in ("[default: 8080; 0<=x<=65535]", "[default: 125]", "[default: 127.0.0.1]",
                  "[default: $KACHERY_GATEWAY_STORAGE or ~/.kachery-resource/gateway]",
                  "[default: $AWS_ENDPOINT_URL or AWS]", "[default: the URL each request came to]"):
        assert shown in flat


# --- S3 storages are checked before the gateway serves -------------------------------------


@pytest.fixture
def no_aws_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No credentials but the environment's: no ~/.aws files, no instance metadata."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield


def test_s3_without_credentials(no_aws_files: None) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    message = refused("--port", "0", "--storage", "s3://bucket/p", "--s3-endpoint-url", endpoint)
    assert message.startswith(f"cannot use the S3 storage s3://bucket/p at {endpoint}: "
                              "no S3 credentials were found")
    assert "AWS_ACCESS_KEY_ID" in message


def test_s3_endpoint_unreachable(no_aws_files: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    endpoint = f"http://127.0.0.1:{free_port()}"
    message = refused("clients", "list", "--storage", "s3://bucket", "--s3-endpoint-url", endpoint)
    assert message.startswith(f"cannot use the S3 storage s3://bucket at {endpoint}: "
                              "the endpoint is unreachable (cannot connect)")
    assert "--s3-endpoint-url" in message


def test_s3_wrong_credentials_and_missing_bucket(s3_server: S3Server, no_aws_files: None,
                                                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    storage = ["--storage", f"s3://{s3_server.bucket}/{tmp_path.name}", "--s3-endpoint-url", s3_server.endpoint]
    listed = run_cli("clients", "list", *storage)
    assert listed.exit_code == 0, listed.output
    assert listed.stderr.startswith(f"zone default: s3://{s3_server.bucket} at {s3_server.endpoint}")
    message = refused("--port", "0", "--storage", f"s3://no-such-bucket-{tmp_path.name.lower()}",
                      "--s3-endpoint-url", s3_server.endpoint)
    assert "no such bucket (NoSuchBucket" in message
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    message = refused("--port", "0", *storage)
    assert f"cannot use the S3 storage s3://{s3_server.bucket}/{tmp_path.name} at {s3_server.endpoint}: " \
           "access denied (" in message


def test_real_cli_refuses_an_unreachable_bucket_in_one_line(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "HOME": str(tmp_path),
           "AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"}
    done = subprocess.run([str(BIN / "kachery-resource"), "gateway", "--port", "0", "--storage",
                           "s3://bucket/p", "--s3-endpoint-url", endpoint],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""  # neither the URL nor the ready lines
    assert done.stderr.startswith("error: cannot use the S3 storage s3://bucket/p")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


async def test_cleanup_failure_is_one_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(storage=str(tmp_path / "s"))
    zones = open_zones(settings)

    async def broken(prefix: str, max_age_sec: float) -> int:
        raise RuntimeError("the bucket went away")

    zones["default"].storage.cleanup = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="kachery_resource.gateway"):
        assert await sweep_unfinished_uploads(settings, zones) == 0
    [record] = caplog.records
    assert record.exc_info is None and record.levelno == logging.WARNING
    assert "zone default failed (RuntimeError: the bucket went away)" in record.getMessage()
