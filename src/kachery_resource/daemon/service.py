"""``kachery-resource service install|uninstall|status``: ``share`` for one resource
directory as a systemd user unit (Linux) or a launchd agent (macOS).

The unit runs ``kachery-resource share --config <dir>/kachery-resource.yaml`` in that
directory, with the environment that matters to it as it is at install time
(``KACHERY_ZONE`` from the config; ``KACHERY_CLOUD_DIR``, ``KACHERY_GATEWAY_URL``,
``KACHERY_DIR``, the HTTP proxy variables when set). It is restarted on failure, except
on exit status 2, a refusal that retrying cannot cure (a wrong secret, say: see
``journalctl``). systemd sends its output to the journal; launchd to
``.kachery-resource/share.log``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from ..config import ResourceConfig

PASSED_ENV = ("KACHERY_CLOUD_DIR", "KACHERY_GATEWAY_URL", "KACHERY_DIR", "HTTPS_PROXY",
              "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy")


@dataclass(frozen=True)
class Unit:
    """What ``install`` writes: where, and the text."""

    kind: str  # "systemd" or "launchd"
    name: str
    path: Path
    text: str


def executable() -> str:
    """The ``kachery-resource`` of this installation (absolute: units have no PATH)."""
    beside = Path(sys.executable).parent / "kachery-resource"
    return str(beside) if beside.exists() else (shutil.which("kachery-resource") or str(beside))


def unit_environment(config: ResourceConfig, env: dict[str, str]) -> dict[str, str]:
    values = {"KACHERY_ZONE": config.zone}
    values.update({k: env[k] for k in PASSED_ENV if env.get(k)})
    return values


def systemd_unit(config: ResourceConfig, config_path: Path, env: dict[str, str],
                 unit_dir: Path | None = None) -> Unit:
    name = f"kachery-resource-{config.resourceName}.service"
    directory = config_path.parent
    lines = [
        "[Unit]",
        f"Description=kachery-resource share: {config.resourceName} ({directory})",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"WorkingDirectory={directory}",
        f'ExecStart="{executable()}" share --config "{config_path}"',
        *(f'Environment="{k}={v}"' for k, v in unit_environment(config, env).items()),
        "Restart=on-failure",
        "RestartSec=5",
        "# exit status 2: a refusal that retrying cannot cure (see the journal)",
        "RestartPreventExitStatus=2",
        "StandardOutput=journal",
        "StandardError=journal",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    folder = unit_dir or Path.home() / ".config" / "systemd" / "user"
    return Unit("systemd", name, folder / name, "\n".join(lines))


def launchd_agent(config: ResourceConfig, config_path: Path, env: dict[str, str],
                  unit_dir: Path | None = None) -> Unit:
    label = f"org.kachery-resource.{config.resourceName}"
    log = config_path.parent / ".kachery-resource" / "share.log"

    def string(value: object) -> str:
        return f"<string>{escape(str(value))}</string>"

    env_items = "".join(f"<key>{escape(k)}</key>{string(v)}"
                        for k, v in unit_environment(config, env).items())
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" '
        '"http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
        '<plist version="1.0"><dict>\n'
        f"<key>Label</key>{string(label)}\n"
        f"<key>ProgramArguments</key><array>{string(executable())}{string('share')}"
        f"{string('--config')}{string(config_path)}</array>\n"
        f"<key>WorkingDirectory</key>{string(config_path.parent)}\n"
        f"<key>EnvironmentVariables</key><dict>{env_items}</dict>\n"
        "<key>RunAtLoad</key><true/>\n"
        "<key>KeepAlive</key><dict><key>SuccessfulExit</key><false/></dict>\n"
        "<key>ThrottleInterval</key><integer>5</integer>\n"
        f"<key>StandardOutPath</key>{string(log)}\n"
        f"<key>StandardErrorPath</key>{string(log)}\n"
        "</dict></plist>\n"
    )
    folder = unit_dir or Path.home() / "Library" / "LaunchAgents"
    return Unit("launchd", label, folder / f"{label}.plist", text)


def make_unit(config: ResourceConfig, config_path: Path, *, platform: str,
              unit_dir: Path | None = None, env: dict[str, str] | None = None) -> Unit:
    env = dict(os.environ) if env is None else env
    build = launchd_agent if platform == "darwin" else systemd_unit
    return build(config, config_path.resolve(), env, unit_dir)


def manager_problem(kind: str) -> str | None:
    """Why ``systemctl --user`` / ``launchctl`` cannot be used here (None: it can)."""
    tool = "systemctl" if kind == "systemd" else "launchctl"
    if shutil.which(tool) is None:
        return f"{tool} is not installed here"
    if kind == "launchd":
        return None
    try:
        out = subprocess.run(["systemctl", "--user", "show-environment"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"systemctl --user does not answer ({exc})"
    if out.returncode != 0:
        why = (out.stderr or out.stdout).strip().splitlines()
        return f"systemctl --user is not usable: {why[0] if why else out.returncode}"
    return None


def manage(unit: Unit, action: str) -> list[list[str]]:
    """The commands that start (``install``), stop (``uninstall``) or report (``status``)."""
    if unit.kind == "systemd":
        commands = {
            "install": [["systemctl", "--user", "daemon-reload"],
                        ["systemctl", "--user", "enable", "--now", unit.name]],
            "uninstall": [["systemctl", "--user", "disable", "--now", unit.name]],
            "status": [["systemctl", "--user", "status", "--no-pager", unit.name]],
        }
    else:
        commands = {
            "install": [["launchctl", "load", "-w", str(unit.path)]],
            "uninstall": [["launchctl", "unload", "-w", str(unit.path)]],
            "status": [["launchctl", "list", unit.name]],
        }
    return commands[action]


def logs_hint(unit: Unit) -> str:
    if unit.kind == "systemd":
        return (f"logs: journalctl --user -u {unit.name} -f   (to keep it running after you log "
                "out: loginctl enable-linger $USER)")
    return f"logs: {unit.text.split('<key>StandardOutPath</key><string>')[1].split('<')[0]}"
