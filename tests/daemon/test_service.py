"""`kachery-resource service`: the systemd unit and launchd agent it writes (the service
managers themselves are usually not usable in a sandbox: that is detected and said)."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from kachery_resource.cli import cli
from kachery_resource.daemon.service import manager_problem


@pytest.fixture
def resource(tmp_path: Path) -> Path:
    cfg = tmp_path / "res dir" / "kachery-resource.yaml"
    cfg.parent.mkdir()
    cfg.write_text("resourceName: lab1\nkacheryZone: z1\nproxyUrl: http://127.0.0.1:9\n")
    return cfg


def test_the_systemd_unit(resource: Path, tmp_path: Path) -> None:
    units = tmp_path / "units"
    env = {"KACHERY_CLOUD_DIR": "/data/kc", "KACHERY_GATEWAY_URL": ""}
    result = CliRunner().invoke(cli, ["service", "install", "--config", str(resource),
                                      "--unit-dir", str(units), "--platform", "linux"], env=env)
    assert result.exit_code == 0, result.output
    unit = units / "kachery-resource-lab1.service"
    text = unit.read_text()
    assert f'share --config "{resource}"' in text and "bin/kachery-resource\" share" in text
    assert f"WorkingDirectory={resource.parent}\n" in text
    for line in ('Environment="KACHERY_ZONE=z1"', 'Environment="KACHERY_CLOUD_DIR=/data/kc"',
                 "Restart=on-failure", "RestartPreventExitStatus=2", "StandardError=journal",
                 "WantedBy=default.target"):
        assert f"\n{line}\n" in text, text
    assert "KACHERY_GATEWAY_URL" not in text  # empty: not passed
    if shutil.which("systemd-analyze"):  # the unit parses as systemd reads it
        out = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                             capture_output=True, text=True)
        assert "kachery-resource-lab1.service:" not in out.stderr, out.stderr
    removed = CliRunner().invoke(cli, ["service", "uninstall", "--config", str(resource),
                                       "--unit-dir", str(units), "--platform", "linux"])
    assert removed.exit_code == 0 and not unit.exists()


def test_the_launchd_agent(resource: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["service", "install", "--config", str(resource),
                                      "--unit-dir", str(tmp_path), "--platform", "darwin"])
    assert result.exit_code == 0, result.output
    agent = plistlib.loads((tmp_path / "org.kachery-resource.lab1.plist").read_bytes())
    assert agent["ProgramArguments"][1:] == ["share", "--config", str(resource)]
    assert agent["KeepAlive"] == {"SuccessfulExit": False} and agent["RunAtLoad"] is True
    assert agent["EnvironmentVariables"]["KACHERY_ZONE"] == "z1"
    assert agent["StandardErrorPath"].endswith(".kachery-resource/share.log")


def test_dry_run_and_an_unusable_service_manager(resource: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    dry = CliRunner().invoke(cli, ["service", "install", "--config", str(resource), "--dry-run",
                                   "--platform", "linux"], env={"HOME": str(home)})
    assert dry.exit_code == 0 and "[Service]" in dry.output and not home.exists()
    problem = manager_problem("systemd")
    if problem is None:
        return  # a usable systemd --user here: installing would really start a service
    result = CliRunner().invoke(cli, ["service", "install", "--config", str(resource),
                                      "--platform", "linux"], env={"HOME": str(home)})
    assert result.exit_code == 1
    assert (home / ".config/systemd/user/kachery-resource-lab1.service").exists()
    assert f"warning: {problem}, so the service was not started; where it works, run: " \
           "systemctl --user daemon-reload && systemctl --user enable --now " \
           "kachery-resource-lab1.service" in result.output
    status = CliRunner().invoke(cli, ["service", "status", "--config", str(resource),
                                      "--platform", "linux"], env={"HOME": str(home)})
    assert status.exit_code == 1 and "installed:" in status.output
