"""Zones YAML and zero-config settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from kachery_resource.errors import ConfigError
from kachery_resource.gateway.envelope import check_timestamp
from kachery_resource.gateway.problems import ApiError
from kachery_resource.gateway.settings import load_settings
from kachery_resource.gateway.zones import open_zones


def test_zero_config_is_default_zone_on_a_directory(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KACHERY_GATEWAY_STORAGE", str(tmp_path / "gw"))
    settings = load_settings()
    assert list(settings.zones) == ["default"]
    zone = open_zones(settings)["default"]
    assert zone.storage.kind == "local" and zone.prefix == ""
    assert (tmp_path / "gw" / ".kachery-gateway-secret").exists()
    z = zone.settings
    assert (z.allow_public_download, z.allow_public_upload, z.auto_approve_clients) == (True, False, False)


def test_zones_file(tmp_path: Path) -> None:
    config = tmp_path / "zones.yaml"
    config.write_text("""
storage: s3://bucket/base
s3EndpointUrl: http://127.0.0.1:9
timestampWindowSec: 10
zones:
  default: {}
  lab.private: {prefix: priv, allowPublicDownload: false, autoApproveClients: true}
  local: {storage: data/local}
""")
    settings = load_settings(config)
    zones = open_zones(settings)
    assert zones["default"].prefix == "base" and zones["default"].storage.kind == "s3"
    assert zones["lab.private"].prefix == "base/priv"
    assert zones["lab.private"].storage is zones["default"].storage  # one client per storage
    assert zones["local"].storage.kind == "local"
    assert (tmp_path / "data" / "local").is_dir()  # relative to the config file
    assert settings.timestamp_window_sec == 10
    assert zones["lab.private"].info()["autoApproveClients"] is True


@pytest.mark.parametrize(("text", "needle"), [
    ("zones: {default: {allowPublicDownlod: false}}", "allowPublicDownlod"),
    ("zones: {'../x': {}}", "invalid zone name"),
    ("timestampWindowSec: -1", "timestampWindowSec"),
    ("- a list", "must be a YAML mapping"),
    ("zones: {default: {prefix: '../up'}}\nstorage: s3://b", "invalid key prefix"),
    ("zones: [", "cannot read gateway config"),
])
def test_bad_zones_file(tmp_path: Path, text: str, needle: str) -> None:
    config = tmp_path / "zones.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        open_zones(load_settings(config, storage=str(tmp_path / "s")))
    assert needle in str(info.value)


def test_timestamp_window_message() -> None:
    check_timestamp(1_000_000, 125, now=1_000 + 125)
    with pytest.raises(ApiError) as info:
        check_timestamp(1_000_000, 125, now=1_000 + 125.5)
    assert info.value.status == 401
    assert "125.5 s behind" in str(info.value) and "±125 s" in str(info.value)
    with pytest.raises(ApiError, match=r"3600\.0 s ahead of"):
        check_timestamp(1_000_000 + 3_600_000, 125, now=1_000)


def test_storage_from_the_environment_takes_the_forms_of_the_flag(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KACHERY_GATEWAY_STORAGE", "s3://bucket/kachery")  # as docs/deploy.md sets it
    assert load_settings().storage == "s3://bucket/kachery"
    monkeypatch.setenv("KACHERY_GATEWAY_STORAGE", "ftp://host/x")
    with pytest.raises(ConfigError, match=r"^invalid \$KACHERY_GATEWAY_STORAGE ftp://host/x: ftp:// "
                                          "storage is not supported"):
        load_settings()


def test_empty_values_mean_not_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Templated configs often leave optional values as empty strings."""
    monkeypatch.setenv("KACHERY_GATEWAY_STORAGE", str(tmp_path / "gw"))
    config = tmp_path / "zones.yaml"
    config.write_text('publicUrl: ""\ns3EndpointUrl: ""\nstorage: ""\nzones:\n  default: {storage: ""}\n')
    settings = load_settings(config)
    assert (settings.public_url, settings.s3_endpoint_url) == (None, None)
    assert settings.storage == str(tmp_path / "gw") and settings.zones["default"].storage is None
