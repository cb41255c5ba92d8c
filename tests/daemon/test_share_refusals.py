"""`kachery-resource share` refuses clearly before connecting anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from kachery_resource.cli import cli

CONFIG = "resourceName: r1\nkacheryZone: z1\nproxyUrl: http://127.0.0.1:9\nproxySecret: s\n"


@pytest.fixture
def env(kc_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("KACHERY_CLOUD_CLIENT_ID", "KACHERY_CLOUD_PRIVATE_KEY", "KACHERY_ZONE",
                 "KACHERY_GATEWAY_URL", "KACHERY_DIR"):
        monkeypatch.delenv(name, raising=False)
    return {"KACHERY_CLOUD_DIR": str(kc_dir), "KACHERY_GATEWAY_URL": "http://127.0.0.1:9"}


def share(tmp_path: Path, env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["share", "--config", str(tmp_path / "kachery-resource.yaml")],
                                env=env)
    assert isinstance(result.exception, SystemExit | Exception)
    return getattr(result.exception, "exit_code", 1), str(result.exception) + result.output


def test_missing_config(tmp_path: Path, env: dict[str, str]) -> None:
    code, text = share(tmp_path, env)
    assert code == 2 and "kachery-resource init" in text


def test_zone_disagrees(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "kachery-resource.yaml").write_text(CONFIG)
    code, text = share(tmp_path, {**env, "KACHERY_ZONE": "other"})
    assert code == 2 and "KACHERY_ZONE is 'other'" in text
    code, text = share(tmp_path, env)  # unset means 'default', which disagrees too
    assert code == 2 and "KACHERY_ZONE is 'default'" in text


def test_no_keys(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "kachery-resource.yaml").write_text(CONFIG)
    code, text = share(tmp_path, {**env, "KACHERY_ZONE": "z1"})
    assert code == 2 and "no kachery-cloud client keys" in text


def test_a_wrong_secret_ends_share_with_the_fix(tmp_path: Path, kc_dir: Path,
                                                env: dict[str, str]) -> None:
    from kachery_resource.identity import ensure_client_keys

    from .live import live_proxy

    ensure_client_keys(kc_dir)
    with live_proxy("right") as proxy:
        (tmp_path / "kachery-resource.yaml").write_text(
            f"resourceName: r1\nproxyUrl: {proxy.url}\nproxySecret: wrong\n")
        code, text = share(tmp_path, env)  # returns: no retrying forever
    assert code == 2
    assert "(code 4001" in text and "fix it with `kachery-resource init`" in text


def test_share_says_which_gateway_and_store_and_warns_on_the_default(
        caplog: pytest.LogCaptureFixture, kc_dir: Path) -> None:
    from kachery_resource.config import DEFAULT_GATEWAY_URL, parse_config
    from kachery_resource.daemon.share import say_where
    from kachery_resource.store import LocalStore

    config = parse_config({"resourceName": "r", "proxyUrl": "http://p",
                           "kacheryCloudDir": str(kc_dir)})
    say_where(config, LocalStore(config.store_dir({})), {})
    text = caplog.text
    assert f"gateway {DEFAULT_GATEWAY_URL} (the hosted default); store {kc_dir} " \
           "(from kachery-resource.yaml)" in text
    assert "HOSTED DEFAULT" in text and "--gateway-url" in text
    caplog.clear()
    say_where(config, LocalStore(kc_dir), {"KACHERY_GATEWAY_URL": "http://127.0.0.1:5"})
    assert "gateway http://127.0.0.1:5 (from KACHERY_GATEWAY_URL)" in caplog.text
    assert "HOSTED DEFAULT" not in caplog.text
