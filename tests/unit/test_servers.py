"""servers.py: a server that cannot listen says why, in one line, and exits 2."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from kachery_resource.servers import cannot_listen

from ..servers import BIN


def run_server(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROXY_SECRET": "s", "KACHERY_CLOUD_DIR": str(tmp_path / "kc")}
    return subprocess.run([str(BIN / "kachery-resource"), *args], capture_output=True, text=True,
                          env=env, timeout=60, cwd=tmp_path)


@pytest.mark.parametrize("command", [["proxy"], ["gateway", "--storage", "gw"]])
def test_port_in_use(tmp_path: Path, command: list[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = run_server([*command, "--host", "127.0.0.1", "--port", str(port)], tmp_path)
    assert done.returncode == 2, done
    assert done.stdout == ""  # no URL: nothing listens
    assert done.stderr.strip() == (f"error: cannot listen on 127.0.0.1:{port}: the port is already "
                                   "in use (another server, or an earlier run still stopping); "
                                   "choose another with --port, or --port 0 for a free one")


@pytest.mark.parametrize("command", [["proxy"], ["gateway", "--storage", "gw"]])
def test_host_that_is_not_this_machine(tmp_path: Path, command: list[str]) -> None:
    done = run_server([*command, "--host", "192.0.2.1", "--port", "0"], tmp_path)  # TEST-NET-1
    assert done.returncode == 2, done
    assert done.stderr.strip() == ("error: cannot listen on 192.0.2.1:0: 192.0.2.1 is not an "
                                   "address of this machine; check --host")


def test_a_host_name_that_does_not_resolve() -> None:
    exc = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert cannot_listen("nohost.invalid", 8080, exc) == (
        "cannot listen on nohost.invalid:8080: 'nohost.invalid' is not a name or address of this "
        "machine (Name or service not known); check --host")
