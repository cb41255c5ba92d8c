"""`kachery-resource init` through its prompts (piped stdin) and through flags."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kachery_resource.cli import cli
from kachery_resource.config import load_config
from kachery_resource.errors import ConfigError
from kachery_resource.identity import load_client_keys


@pytest.fixture
def env(kc_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.delenv("KACHERY_CLOUD_CLIENT_ID", raising=False)
    monkeypatch.delenv("KACHERY_CLOUD_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("KACHERY_GATEWAY_URL", raising=False)
    monkeypatch.delenv("KACHERY_DIR", raising=False)
    return {"KACHERY_CLOUD_DIR": str(kc_dir)}


def test_init_prompts_reask_on_bad_input_and_write_0600(tmp_path: Path, kc_dir: Path,
                                                        env: dict[str, str]) -> None:
    cfg = tmp_path / "kachery-resource.yaml"
    answers = "\n".join([
        "bad name!", "my_resource",        # invalid name, asked again
        "franklab.default",
        "zero", "0", "3",                  # not a positive integer, twice
        "ftp://proxy", "http://127.0.0.1:3030/",
        "s3cret",
    ]) + "\n"
    result = CliRunner().invoke(cli, ["init", "--config", str(cfg), "--no-check"],
                                input=answers, env=env)
    assert result.exit_code == 0, result.output
    # stdin is not a terminal: no prompt text, only each bad answer explained
    assert "Resource name:" not in result.stdout and "Proxy secret" not in result.output
    assert result.stderr.count("error: Resource name: invalid resource name") == 1
    assert result.stderr.count("error: Maximum concurrent uploads:") == 2
    assert result.stderr.count("error: Proxy URL:") == 1
    assert "s3cret" not in result.output
    data = yaml.safe_load(cfg.read_text())
    assert data == {"resourceName": "my_resource", "kacheryZone": "franklab.default",
                    "maxConcurrentUploads": 3, "proxyUrl": "http://127.0.0.1:3030",
                    "proxySecret": "s3cret", "kacheryCloudDir": str(kc_dir)}
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    keys = load_client_keys(kc_dir, {})
    assert keys is not None
    assert f"Client id: {keys.client_id}" in result.output
    assert f"gateway clients add {keys.client_id}" in result.output
    assert f"registerClient/{keys.client_id}?signature=" in result.output


def test_init_defaults_come_from_existing_file(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = tmp_path / "kachery-resource.yaml"
    cfg.write_text("resourceName: old_name\nkacheryZone: z9\nmaxConcurrentUploads: 5\n"
                   "proxyUrl: https://p.example.org\nproxySecret: keepme\n")
    # Enter on every prompt keeps the old value, including the hidden secret
    result = CliRunner().invoke(cli, ["init", "--config", str(cfg), "--no-check"], input="\n" * 5,
                                env=env)
    assert result.exit_code == 0, result.output
    loaded = load_config(cfg)
    assert (loaded.resourceName, loaded.zone, loaded.maxConcurrentUploads, loaded.proxyUrl,
            loaded.proxySecret) == ("old_name", "z9", 5, "https://p.example.org", "keepme")
    assert "keepme" not in result.output


def test_init_by_flags_without_prompts(tmp_path: Path, kc_dir: Path, env: dict[str, str]) -> None:
    cfg = tmp_path / "kachery-resource.yaml"
    args = ["init", "--config", str(cfg), "--name", "res1", "--zone", ".",
            "--max-concurrent-uploads", "4", "--proxy-url", "https://proxy.example.org",
            "--proxy-secret", "pw", "--gateway-url", "http://127.0.0.1:9/", "--no-check"]
    result = CliRunner().invoke(cli, args, input="", env=env)
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(cfg.read_text())
    assert data == {"resourceName": "res1", "maxConcurrentUploads": 4,
                    "proxyUrl": "https://proxy.example.org", "proxySecret": "pw",
                    "gatewayUrl": "http://127.0.0.1:9", "kacheryCloudDir": str(kc_dir)}
    assert (kc_dir / "private.pem").exists()
    # running again keeps the same keys
    first = load_client_keys(kc_dir, {})
    result = CliRunner().invoke(cli, [*args[:3], "-y", "--no-check"], input="", env=env)
    assert result.exit_code == 0, result.output
    assert load_client_keys(kc_dir, {}) == first
    assert yaml.safe_load(cfg.read_text()) == data


def test_init_reports_every_bad_flag_at_once(tmp_path: Path, env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["init", "--config", str(tmp_path / "c.yaml"), "--name",
                                      "no spaces", "--proxy-url", "ftp://x", "--zone", "a b",
                                      "--max-concurrent-uploads", "0", "--gateway-url", "gw", "-y"],
                                input="", env=env)
    assert result.exit_code == 2
    for words in ("--name: invalid resource name", "--proxy-url: invalid proxy URL",
                  "--zone: invalid zone", "--max-concurrent-uploads: expected a positive",
                  "--gateway-url: invalid gateway URL"):
        assert words in result.output, result.output
    assert not (tmp_path / "c.yaml").exists()


def test_init_records_the_gateway_and_store_of_its_environment(
        tmp_path: Path, kc_dir: Path, env: dict[str, str]) -> None:
    cfg = tmp_path / "kachery-resource.yaml"
    flags = ["init", "--config", str(cfg), "--name", "r", "--proxy-url", "http://127.0.0.1:9",
             "-y", "--no-check"]
    result = CliRunner().invoke(cli, flags, env={**env, "KACHERY_GATEWAY_URL": "http://127.0.0.1:7/"})
    assert result.exit_code == 0, result.output
    assert "gatewayUrl: http://127.0.0.1:7 (from KACHERY_GATEWAY_URL)" in result.output
    config = load_config(cfg)
    # a new shell, without the variables: share gets what init's shell had
    assert config.gateway_url({}) == "http://127.0.0.1:7"
    assert config.store_dir({}) == kc_dir
    # the environment still wins when set
    assert config.gateway_url({"KACHERY_GATEWAY_URL": "http://127.0.0.1:8"}) == "http://127.0.0.1:8"
    # a flag says otherwise: the flag wins over the environment
    result = CliRunner().invoke(cli, [*flags, "--gateway-url", "http://127.0.0.1:6"],
                                env={**env, "KACHERY_GATEWAY_URL": "http://127.0.0.1:7/"})
    assert result.exit_code == 0, result.output
    assert load_config(cfg).gatewayUrl == "http://127.0.0.1:6"


def test_init_with_y_never_prompts(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = tmp_path / "c.yaml"
    result = CliRunner().invoke(cli, ["init", "--config", str(cfg), "-y"], input="", env=env)
    assert result.exit_code == 2
    assert "Resource name:" not in result.output  # no prompt
    assert "-y found no resource name in the existing config; give it with --name" in result.output
    # every required value given: the secret may stay empty without a prompt
    result = CliRunner().invoke(cli, ["init", "--config", str(cfg), "--name", "ok",
                                      "--proxy-url", "https://p.example.org", "-y", "--no-check"],
                                input="", env=env)
    assert result.exit_code == 0, result.output
    assert "Proxy secret" not in result.output
    assert yaml.safe_load(cfg.read_text()) == {"resourceName": "ok", "maxConcurrentUploads": 2,
                                               "proxyUrl": "https://p.example.org",
                                               "kacheryCloudDir": env["KACHERY_CLOUD_DIR"]}


def test_init_input_that_ends_unanswered(tmp_path: Path, env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["init", "--config", str(tmp_path / "c.yaml"), "--no-check"],
                                input="bad name!\n", env=env)
    assert result.exit_code == 2  # a usage error, not "aborted" (130)
    assert "the input ended before 'Resource name' had a valid answer; give it with --name" \
        in result.output
    assert not (tmp_path / "c.yaml").exists()


def test_init_config_in_a_missing_directory(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = tmp_path / "nowhere" / "c.yaml"
    result = CliRunner().invoke(cli, ["init", "--config", str(cfg), "--name", "ok", "--proxy-url",
                                      "https://p.example.org", "-y", "--no-check"], input="", env=env)
    assert isinstance(result.exception, ConfigError)  # main() prints it and exits 2
    assert f"the directory {cfg.parent} does not exist" in str(result.exception)
