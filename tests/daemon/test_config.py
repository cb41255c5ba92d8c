"""kachery-resource.yaml: the old tool's files load unchanged; validation; env overrides."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kachery_resource.config import (
    DEFAULT_GATEWAY_URL,
    UPLOAD_KEYS,
    ResourceConfig,
    load_config,
    parse_config,
    save_config,
)
from kachery_resource.errors import ConfigError

# exactly what the old TypeScript tool's `yaml.dump(config)` writes
OLD_FILE = """resourceName: example_resource
kacheryZone: franklab.collaborators
maxConcurrentUploads: 3
proxyUrl: https://kachery-resource-proxy.herokuapp.com
proxySecret: 'abc:123'
"""
OLD_FILE_DEFAULT_ZONE = """resourceName: example_resource
proxyUrl: http://localhost:3030
proxySecret: xyz
"""


def test_old_tool_file_loads_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "kachery-resource.yaml"
    path.write_text(OLD_FILE)
    cfg = load_config(path)
    assert cfg.resourceName == "example_resource"
    assert cfg.zone == "franklab.collaborators"
    assert cfg.maxConcurrentUploads == 3
    assert cfg.proxyUrl == "https://kachery-resource-proxy.herokuapp.com"
    assert cfg.proxySecret == "abc:123"
    assert cfg.resource_url == "https://kachery-resource-proxy.herokuapp.com/r/example_resource"
    # writing it back keeps the old keys and values
    save_config(cfg, path)
    again = load_config(path)
    assert again == cfg
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_old_file_without_zone_or_limit_uses_defaults(tmp_path: Path) -> None:
    path = tmp_path / "kachery-resource.yaml"
    path.write_text(OLD_FILE_DEFAULT_ZONE)
    cfg = load_config(path)
    assert cfg.zone == "default" and cfg.maxConcurrentUploads == 2
    assert parse_config({**cfg.to_yaml_dict(), "kacheryZone": None}).zone == "default"


def test_a_misspelled_key_is_an_error_naming_the_nearest_key(tmp_path: Path) -> None:
    path = tmp_path / "kachery-resource.yaml"
    path.write_text(OLD_FILE + "multipartTreshold: 1000\nfutureKey: [1, 2]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert "unknown key 'multipartTreshold' (did you mean 'multipartThreshold'?)" in text
    assert "unknown key 'futureKey'" in text  # every unknown key, not only the first
    with pytest.raises(ConfigError, match="did you mean 'proxySecret'"):
        parse_config({"resourceName": "r", "proxyUrl": "http://p", "proxySecrit": "x"})


def test_upload_keys_are_the_upload_settings() -> None:
    from kachery_resource.daemon.uploads.multipart import MultipartSettings

    aliases = {f.alias for f in MultipartSettings.model_fields.values()}
    assert aliases == set(UPLOAD_KEYS)
    cfg = parse_config({"resourceName": "r", "proxyUrl": "http://p", "multipartPartTries": 3})
    assert MultipartSettings.from_mapping(cfg.model_extra).part_tries == 3


def test_store_dir_env_wins_over_the_file() -> None:
    cfg = ResourceConfig(resourceName="r", proxyUrl="http://p", kacheryCloudDir="/data/kc")
    assert str(cfg.store_dir({})) == "/data/kc"
    assert cfg.store_source({}) == "from kachery-resource.yaml"
    assert str(cfg.store_dir({"KACHERY_CLOUD_DIR": "/other"})) == "/other"
    assert cfg.store_source({"KACHERY_CLOUD_DIR": "/other"}) == "from KACHERY_CLOUD_DIR"


@pytest.mark.parametrize("data, words", [
    ({"proxyUrl": "http://p"}, "resourceName"),
    ({"resourceName": "bad name!", "proxyUrl": "http://p"}, "invalid resource name"),
    ({"resourceName": "r", "proxyUrl": "ftp://p"}, "invalid proxy URL"),
    ({"resourceName": "r", "proxyUrl": "http://p", "maxConcurrentUploads": 0}, "positive integer"),
    ({"resourceName": "r", "proxyUrl": "http://p", "maxConcurrentUploads": "x"}, "positive integer"),
])
def test_invalid_settings_name_the_problem(data: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_config(data)


def test_missing_file_says_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="kachery-resource init"):
        load_config(tmp_path / "kachery-resource.yaml")


def test_gateway_url_env_overrides_config() -> None:
    cfg = ResourceConfig(resourceName="r", proxyUrl="http://p", gatewayUrl="http://g:1/")
    assert cfg.gateway_url({}) == "http://g:1"
    assert cfg.gateway_url({"KACHERY_GATEWAY_URL": "http://other:2"}) == "http://other:2"
    assert ResourceConfig(resourceName="r", proxyUrl="http://p").gateway_url({}) == DEFAULT_GATEWAY_URL


def test_zone_env_must_agree() -> None:
    cfg = ResourceConfig(resourceName="r", proxyUrl="http://p", kacheryZone="z1")
    cfg.check_zone_env({"KACHERY_ZONE": "z1"})
    with pytest.raises(ConfigError, match="KACHERY_ZONE"):
        cfg.check_zone_env({"KACHERY_ZONE": "z2"})
    with pytest.raises(ConfigError, match="KACHERY_ZONE"):
        cfg.check_zone_env({})
    ResourceConfig(resourceName="r", proxyUrl="http://p").check_zone_env({})


def test_upload_whole_after_ranges_is_a_setting() -> None:
    base = {"resourceName": "r", "proxyUrl": "http://p"}
    assert parse_config(base).uploadWholeAfterRanges is True
    off = parse_config({**base, "uploadWholeAfterRanges": False})
    assert off.uploadWholeAfterRanges is False
    assert parse_config(off.to_yaml_dict()).uploadWholeAfterRanges is False  # saved by init
    with pytest.raises(ConfigError, match="did you mean 'uploadWholeAfterRanges'"):
        parse_config({**base, "uploadWholeAfterRange": False})
    with pytest.raises(ConfigError, match="uploadWholeAfterRanges"):
        parse_config({**base, "uploadWholeAfterRanges": "sometimes"})
