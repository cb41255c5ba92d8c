"""`kachery-resource share` refuses clearly before connecting anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from kachery_resource.cli import cli

CONFIG = "resourceName: r1\nkacheryZone: z1\nproxyUrl: http://127.0.0.1:9\nproxySecret: s\n"


@pytest.fixture
def env(kc_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("KACHERY_CLOUD_CLIENT_ID", "KACHERY_CLOUD_PRIVATE_KEY", "KACHERY_ZONE"):
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
