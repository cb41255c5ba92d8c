"""Gateway, proxy and two daemons as separate processes, for the on-demand tests.

The gateway's zones file makes announcements short-lived (``announcementTtlSec``), so a
stopped daemon drops out within seconds. Each daemon has its own store, so a test
chooses which of them holds a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from kachery_resource.identity import ClientKeys, signed_envelope
from kachery_resource.store import LocalStore

from ..servers import BIN, S3Server, ServerProcess, start_cli, wait_until
from .conftest import run_cli

TTL_SEC = 3


@dataclass
class Daemon:
    name: str
    process: ServerProcess
    store: LocalStore

    def requests_for(self, sha1: str) -> int:
        """How many requests for ``sha1`` this daemon answered (its per-request log line)."""
        return sum(1 for line in self.process.output if re.search(rf"request \S+ sha1://{sha1} ", line))


@dataclass
class OnDemandStack:
    workdir: Path
    gateway: ServerProcess
    proxy: ServerProcess
    proxy_secret: str
    storage_args: list[str]
    env: dict[str, str]
    keys: ClientKeys
    access_log: Path | None = None  # else the gateway's stderr
    daemons: dict[str, Daemon] = field(default_factory=dict)

    def access_lines(self) -> list[dict[str, Any]]:
        """The gateway's access-log lines so far."""
        lines = (self.access_log.read_text().splitlines() if self.access_log is not None
                 else self.gateway.output)
        return [json.loads(x) for x in lines if x.startswith("{")]

    def start_daemon(self, name: str, zone: str = "default") -> Daemon:
        """``kachery-resource share`` for ``zone`` (its keys need upload rights there)."""
        rdir = self.workdir / f"daemon-{name}"
        rdir.mkdir(exist_ok=True)
        (rdir / "kachery-resource.yaml").write_text(
            f"resourceName: {name}\nmaxConcurrentUploads: 2\nproxyUrl: {self.proxy.url}\n"
            f"proxySecret: {self.proxy_secret}\ngatewayUrl: {self.gateway.url}\nkacheryZone: {zone}\n")
        store = rdir / "kc"
        env = {"KACHERY_CLOUD_DIR": str(store), "KACHERY_CLOUD_CLIENT_ID": self.keys.client_id,
               "KACHERY_CLOUD_PRIVATE_KEY": self.keys.private_key_hex, "KACHERY_ZONE": zone,
               "KACHERY_DIR": str(rdir / "kachery")}  # not the user's ~/.kachery
        process = start_cli(["share"], env=env, cwd=rdir, ready=r"KACHERY_RESOURCE_URL=(\S+)",
                            timeout=60)
        daemon = Daemon(name, process, LocalStore(store))
        self.daemons[name] = daemon
        wait_until(lambda: any("announced" in line for line in process.output), timeout=20)
        return daemon

    def link(self, data: bytes, *names: str) -> str:
        """A file with ``data``, linked in the stores of the daemons ``names``; its sha1."""
        path = self.workdir / "files" / secrets.token_hex(4)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        for name in names:
            self.daemons[name].store.link(path)
        return hashlib.sha1(data).hexdigest()

    def find(self, sha1: str, keys: ClientKeys | None = None, timeout: float = 60) -> dict[str, Any]:
        """A signed findFile, like kachery-cloud's."""
        payload = {"type": "findFile", "hashAlg": "sha1", "hash": sha1, "zone": "default"}
        resp = requests.post(f"{self.gateway.url}/api/gateway",
                             json=signed_envelope(keys or ClientKeys.generate(), payload), timeout=timeout)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def download(self, found: dict[str, Any]) -> bytes:
        return requests.get(found["url"], timeout=60).content

    def metric(self, name: str, labels: str = "") -> float:
        """One sample of the gateway's /metrics (0 when absent)."""
        text = requests.get(f"{self.gateway.url}/metrics", timeout=10).text
        match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    def cli(self, *args: str) -> str:
        done = subprocess.run([str(BIN / "kachery-resource"), "gateway", *args, *self.storage_args],
                              capture_output=True, text=True, env={**os.environ, **self.env}, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def add_user(self, name: str, *flags: str) -> str:
        """``gateway users add NAME FLAGS`` (the CLI, in-process); returns the printed API key."""
        done = run_cli("users", "add", name, *flags, *self.storage_args, env=self.env)
        assert done.exit_code == 0, done.output
        return done.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        for daemon in self.daemons.values():
            daemon.process.stop()
        self.gateway.stop()
        self.proxy.stop()


def start_stack(workdir: Path, s3: S3Server | None, names: tuple[str, ...] = ("lab-a", "lab-b"),
                access_log: Path | None = None) -> OnDemandStack:
    """A gateway (local directory, or ``s3``) whose zone ``default`` has daemons ``names``
    (and a zone ``private`` without public download); its access log goes to
    ``access_log`` (default: its stderr)."""
    env = {} if s3 is None else {**s3.env(), "AWS_ENDPOINT_URL": s3.endpoint}
    storage = str(workdir / "bucket") if s3 is None else f"s3://{s3.bucket}/{workdir.name}"
    config = workdir / "zones.yaml"
    config.write_text(f"storage: {storage}\nannouncementTtlSec: {TTL_SEC}\nresourcesCacheSec: 0.2\n"
                      "negativeCacheSec: 2\nzones:\n  default:\n    onDemandWaitSec: 20\n"
                      "  private:\n    prefix: private\n    allowPublicDownload: false\n")
    storage_args = ["--config", str(config)]
    keys = ClientKeys.generate()
    secret = secrets.token_urlsafe(12)
    with ThreadPoolExecutor(3) as pool:  # every process starts at once: Python starts slowly
        registered = pool.submit(subprocess.run, [
            str(BIN / "kachery-resource"), "gateway", "clients", "add", keys.client_id,
            *storage_args, "--upload"], env={**os.environ, **env}, check=True,
            capture_output=True, timeout=60)
        starting = pool.submit(start_cli, ["proxy", "--port", "0", "--access-log", "off"],
                               env={"PROXY_SECRET": secret}, timeout=60)
        log_args = ["--access-log", str(access_log)] if access_log else []
        gateway = start_cli(["gateway", "--port", "0", *storage_args, *log_args], env=env, timeout=60)
        proxy = starting.result()
        registered.result()
        stack = OnDemandStack(workdir, gateway, proxy, secret, storage_args, env, keys, access_log)
        try:
            list(pool.map(stack.start_daemon, names))
        except BaseException:
            stack.stop()
            raise
    return stack
