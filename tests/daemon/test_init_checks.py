"""`kachery-resource init` checks what it can before writing: store, proxy and secret,
gateway and zone, registration and upload rights (against our real proxy and gateway)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kachery_resource.cli import cli
from kachery_resource.identity import load_client_keys

from .live import live_gateway, live_proxy, register


@pytest.fixture
def env(kc_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("KACHERY_CLOUD_CLIENT_ID", "KACHERY_CLOUD_PRIVATE_KEY", "KACHERY_ZONE",
                 "KACHERY_GATEWAY_URL", "KACHERY_DIR"):
        monkeypatch.delenv(name, raising=False)
    return {"KACHERY_CLOUD_DIR": str(kc_dir)}


def init(cfg: Path, proxy_url: str, secret: str, env: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, ["init", "--config", str(cfg), "--name", "res1", "--zone", ".",
                                    "--proxy-url", proxy_url, "--proxy-secret", secret, "-y"],
                              input="", env=env)


def test_init_checks_before_writing(tmp_path: Path, kc_dir: Path, env: dict[str, str]) -> None:
    cfg = tmp_path / "kachery-resource.yaml"
    with live_proxy("right") as proxy, live_gateway(tmp_path / "zone") as gateway:
        env = {**env, "KACHERY_GATEWAY_URL": gateway.url}
        wrong = init(cfg, proxy.url, "wrong", env)
        assert wrong.exit_code == 1, wrong.output
        assert "FAIL proxy secret: the proxy refused the daemon (code 4001)" in wrong.output
        assert "fix: the proxy did not accept proxySecret" in wrong.output
        assert "Nothing was written" in wrong.output and not cfg.exists()

        first = init(cfg, proxy.url, "right", env)  # new keys: not registered yet, but written
        assert first.exit_code == 0, first.output
        keys = load_client_keys(kc_dir, {})
        assert keys is not None
        assert "ok   proxy secret: accepted for 'res1'" in first.output
        assert "ok   zone: 'default' is known" in first.output
        assert (f"FAIL registration: client {keys.client_id} is not registered in zone 'default' "
                f"— fix: the zone's operator runs `kachery-resource gateway clients add "
                f"{keys.client_id}") in first.output
        assert cfg.exists()

        register(gateway, keys, upload=False)
        no_upload = init(cfg, proxy.url, "right", env)
        assert "FAIL upload rights:" in no_upload.output, no_upload.output
        register(gateway, keys, upload=True)
        good = init(cfg, proxy.url, "right", env)
        assert good.exit_code == 0 and "FAIL" not in good.output, good.output
        assert "ok   upload rights" in good.output

        unknown_zone = CliRunner().invoke(cli, ["init", "--config", str(cfg), "--zone", "nozone",
                                                "-y"], input="", env={**env, "KACHERY_ZONE": "nozone"})
        assert unknown_zone.exit_code == 1
        assert "FAIL zone:" in unknown_zone.output and "no zone 'nozone'" in unknown_zone.output


def test_init_reports_an_unreachable_proxy_and_an_unwritable_store(
        tmp_path: Path, env: dict[str, str]) -> None:
    cfg = tmp_path / "kachery-resource.yaml"
    (tmp_path / "a_file").write_text("")
    bad_store = {**env, "KACHERY_CLOUD_DIR": str(tmp_path / "a_file" / "store")}
    result = init(cfg, "http://127.0.0.1:9", "s", bad_store)
    assert result.exit_code == 1
    assert "FAIL store:" in result.output and "is not writable" in result.output
    with live_gateway(tmp_path / "zone") as gateway:
        result = init(cfg, "http://127.0.0.1:9", "s", {**env, "KACHERY_GATEWAY_URL": gateway.url})
    assert result.exit_code == 1 and not cfg.exists()
    assert "FAIL proxy: cannot reach http://127.0.0.1:9: connection refused" in result.output
    assert "ok   gateway:" in result.output  # every check is made, not only up to the first


def test_a_check_never_takes_the_name_of_a_resource_online_elsewhere(
        tmp_path: Path, env: dict[str, str]) -> None:
    from ..proxy.v1daemon import V1Daemon

    with live_proxy("right") as proxy, live_gateway(tmp_path / "zone") as gateway:
        daemon = V1Daemon(proxy.url, "res1", "right")
        assert proxy.run(daemon.connect())
        try:
            checked = init(tmp_path / "kachery-resource.yaml", proxy.url, "right",
                           {**env, "KACHERY_GATEWAY_URL": gateway.url})
            assert "ok   proxy secret: not tried: 'res1' is online at the proxy" in checked.output
            assert daemon.close_code is None and daemon.ws is not None and not daemon.ws.closed
            assert daemon.received  # the probe reached the daemon: a hash nobody has
        finally:
            proxy.run(daemon.close())
