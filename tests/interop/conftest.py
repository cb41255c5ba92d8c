"""The whole stack as separate processes, and kachery-cloud 0.4.10 runs in subprocesses.

One proxy per session; per backend (local directory, SeaweedFS) one gateway and one
daemon sharing a host ``KACHERY_CLOUD_DIR``. Remote clients get their own store and
fresh keys (the default zone allows public download, so they need no registration).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kachery_resource.client import ClientSettings
from kachery_resource.identity import ClientKeys, ensure_client_keys

from ..servers import BIN, S3Server, ServerProcess, start_cli

RESULT = "RESULT:"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(BIN / "kachery-resource"), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def run_python(script: str, env: dict[str, str], *args: str, timeout: float = 180) -> Any:
    """Run ``script`` in a fresh interpreter; it prints ``RESULT:<json>`` as its answer."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("KACHERY_")}
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          env={**base, **env}, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith(RESULT))
    return json.loads(line[len(RESULT):])


HOST_LINK = """
import json, sys, kachery_cloud as kc
out = []
for mode, path in json.loads(sys.argv[1]):
    out.append(kc.link_file(path) if mode == "link" else kc.store_file_local(path))
print("RESULT:" + json.dumps(out))
"""

REMOTE_LOAD = """
import json, sys, time, kachery_cloud as kc
out = []
for uri in json.loads(sys.argv[1]):
    t = time.monotonic()
    path = kc.load_file(uri)
    out.append({"path": path, "sec": time.monotonic() - t})
print("RESULT:" + json.dumps(out))
"""


@dataclass
class Stack:
    """Gateway + daemon for one backend, sharing the session's proxy."""

    backend: str
    gateway: ServerProcess
    daemon: ServerProcess
    proxy_url: str
    proxy_secret: str
    host_dir: Path
    workdir: Path
    gateway_env: dict[str, str]
    extra: list[ServerProcess] = field(default_factory=list)

    @property
    def resource_url(self) -> str:
        return self.daemon.url

    def host_env(self) -> dict[str, str]:
        return {"KACHERY_CLOUD_DIR": str(self.host_dir), "KACHERY_GATEWAY_URL": self.gateway.url}

    def host_add(self, files: list[tuple[str, Path]]) -> list[str]:
        """``kachery_cloud.link_file`` / ``store_file_local`` on the host; returns URIs."""
        return list(run_python(HOST_LINK, self.host_env(),
                               json.dumps([(mode, str(p)) for mode, p in files])))

    def remote_env(self, name: str, resource_url: str | None = None) -> dict[str, str]:
        keys = ClientKeys.generate()
        store = self.workdir / f"remote-{name}-{secrets.token_hex(3)}"
        store.mkdir()
        return {"KACHERY_CLOUD_DIR": str(store), "KACHERY_GATEWAY_URL": self.gateway.url,
                "KACHERY_ZONE": "default", "KACHERY_RESOURCE_URL": resource_url or self.resource_url,
                "KACHERY_CLOUD_CLIENT_ID": keys.client_id,
                "KACHERY_CLOUD_PRIVATE_KEY": keys.private_key_hex}

    def kachery_cloud_load(self, uris: list[str], name: str = "kc") -> list[dict[str, Any]]:
        """The released client loads ``uris`` in one subprocess with its own store."""
        return list(run_python(REMOTE_LOAD, self.remote_env(name), json.dumps(uris)))

    def our_settings(self, name: str, resource_url: str | None = None) -> ClientSettings:
        store = self.workdir / f"ours-{name}-{secrets.token_hex(3)}"
        keys, _ = ensure_client_keys(store)
        return ClientSettings(store_dir=store, gateway_url=self.gateway.url, zone="default",
                              resource_url=resource_url or self.resource_url, keys=keys)

    def start_daemon(self, resource_name: str) -> ServerProcess:
        """Another ``kachery-resource share`` for the same host store, under another name."""
        rdir = self.workdir / f"resource-{resource_name}"
        rdir.mkdir()
        config = rdir / "kachery-resource.yaml"
        config.write_text(
            f"resourceName: {resource_name}\nkacheryZone: default\nmaxConcurrentUploads: 2\n"
            f"proxyUrl: {self.proxy_url}\nproxySecret: {self.proxy_secret}\n"
            f"gatewayUrl: {self.gateway.url}\n")
        daemon = start_cli(["share", "--config", str(config)], env=self.host_env(), cwd=rdir,
                           ready=r"KACHERY_RESOURCE_URL=(\S+)", timeout=60)
        self.extra.append(daemon)
        return daemon


@pytest.fixture(scope="session")
def proxy() -> Iterator[tuple[str, str]]:
    secret = secrets.token_urlsafe(16)
    server = start_cli(["proxy", "--host", "127.0.0.1", "--port", "0"],
                       env={"PROXY_SECRET": secret}, timeout=60)
    try:
        yield server.url, secret
    finally:
        server.stop()


def _stack(backend: str, workdir: Path, proxy: tuple[str, str], s3: S3Server | None) -> Stack:
    host_dir = workdir / "host-kachery-cloud"
    keys, _ = ensure_client_keys(host_dir)
    if s3 is None:
        storage, env = str(workdir / "bucket"), {}
    else:
        storage = f"s3://{s3.bucket}/{workdir.name}"
        env = {**s3.env(), "AWS_ENDPOINT_URL": s3.endpoint}
    with ThreadPoolExecutor(2) as pool:
        registering = pool.submit(run_cli, "gateway", "clients", "add", keys.client_id,
                                  "--storage", storage, "--upload", "--download", env=env)
        # these tests exercise the resource protocol (KACHERY_RESOURCE_URL); the gateway's
        # own on-demand fetch has its tests in tests/gateway/test_on_demand_e2e.py
        gateway = start_cli(["gateway", "--host", "127.0.0.1", "--port", "0", "--storage", storage,
                             "--no-on-demand"], env=env, timeout=60)
        registering.result()
    proxy_url, secret = proxy
    rdir = workdir / "resource"
    rdir.mkdir()
    (rdir / "kachery-resource.yaml").write_text(
        f"resourceName: {backend}-{workdir.name[-6:]}\nkacheryZone: default\n"
        f"maxConcurrentUploads: 2\nproxyUrl: {proxy_url}\nproxySecret: {secret}\n"
        f"gatewayUrl: {gateway.url}\n")
    daemon = start_cli(["share"], env={"KACHERY_CLOUD_DIR": str(host_dir)}, cwd=rdir,
                       ready=r"KACHERY_RESOURCE_URL=(\S+)", timeout=60)
    return Stack(backend, gateway, daemon, proxy_url, secret, host_dir, workdir, env)


def _stop(st: Stack) -> None:
    for proc in (*st.extra, st.daemon, st.gateway):
        proc.stop()


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory, proxy: tuple[str, str]) -> Iterator[Stack]:
    st = _stack("local", tmp_path_factory.mktemp("interop-local"), proxy, None)
    try:
        yield st
    finally:
        _stop(st)


@pytest.fixture(scope="session")
def s3_stack(tmp_path_factory: pytest.TempPathFactory, proxy: tuple[str, str],
             s3_server: S3Server) -> Iterator[Stack]:
    st = _stack("s3", tmp_path_factory.mktemp("interop-s3"), proxy, s3_server)
    try:
        yield st
    finally:
        _stop(st)


@pytest.fixture(params=["local", "s3"])
def stack(request: pytest.FixtureRequest) -> Stack:
    """Each backend in turn (the stacks live for the whole session)."""
    return request.getfixturevalue(f"{request.param}_stack")  # type: ignore[no-any-return]
