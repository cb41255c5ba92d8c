"""``kachery-resource demo`` and ``dev``: the whole stack on loopback, no configuration.

Each part runs as its own process of this same CLI (gateway on a local-directory bucket,
proxy, daemon), in a temporary workspace; the demo then plays a remote client with its
own ``KACHERY_CLOUD_DIR`` and fetches a file cold (through the daemon) and warm (from
the bucket). ``dev`` keeps the stack running and prints what a client needs.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import click

from .client import ClientSettings, load_file
from .errors import ConfigError
from .hashing import sha1_of_file
from .identity import ensure_client_keys

RESOURCE_NAME = "demo"
ZONE = "default"
READY_TIMEOUT_SEC = 60.0


def _cli() -> list[str]:
    """How to run this same CLI in a child process."""
    script = Path(sys.executable).parent / "kachery-resource"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from kachery_resource.cli import main; main()"]


@dataclass
class Child:
    """A running part of the stack; its output goes to ``log``."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    one_shot: bool = False

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_for(self, pattern: str, timeout: float = READY_TIMEOUT_SEC) -> str:
        """The first group of the first output line matching ``pattern``."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in self.log.read_text(errors="replace").splitlines():
                match = regex.search(line)
                if match:
                    return match.group(1)
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        exited = self.proc.poll()
        how = f"it exited with code {exited}" if exited is not None else f"not ready after {timeout:.0f} s"
        raise ConfigError(f"the {self.name} did not start ({how}); its output:\n{self.tail()}")

    def wait_done(self, timeout: float = 120) -> None:
        """Wait for a one-shot command; ConfigError with its output if it failed."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = -1
        if code != 0:
            raise ConfigError(f"{self.name} failed (exit {code}); its output:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Stack:
    """Gateway + proxy + daemon in ``workdir``; every child stopped on exit."""

    def __init__(self, workdir: Path, say: Callable[[str], None]) -> None:
        self.workdir = workdir
        self.say = say
        self.bucket = workdir / "bucket"
        self.host_dir = workdir / "host-kachery-cloud"
        self.resource_dir = workdir / "resource"
        self.children: list[Child] = []
        self.gateway_url = self.proxy_url = self.resource_url = ""
        self._t0 = time.monotonic()

    def step(self, text: str) -> None:
        self.say(f"[{time.monotonic() - self._t0:6.2f} s] {text}")

    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KACHERY_")}
        return {**env, "PYTHONUNBUFFERED": "1", **extra}

    def _spawn(self, name: str, args: list[str], env: dict[str, str], cwd: Path | None = None,
               one_shot: bool = False) -> Child:
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([*_cli(), *args], stdout=out, stderr=subprocess.STDOUT,
                                    env=env, cwd=cwd, start_new_session=True)
        child = Child(name, proc, log, one_shot)
        self.children.append(child)
        return child

    def start(self, share: Path, gateway_port: int = 0, proxy_port: int = 0,
              daemon_settings: str = "") -> list[str]:
        """Start everything, link ``share``; returns the manifest lines (path, uri).
        ``daemon_settings``: more lines of kachery-resource.yaml (tests, benchmarks).

        Gateway, proxy, client registration and linking start at once (each is a process
        of this CLI); the daemon starts when they are ready.
        """
        self.bucket.mkdir(parents=True, exist_ok=True)
        self.resource_dir.mkdir(parents=True, exist_ok=True)
        keys, _ = ensure_client_keys(self.host_dir)
        secret = secrets.token_urlsafe(24)
        host_env = self._env(KACHERY_CLOUD_DIR=str(self.host_dir))
        manifest = self.workdir / "manifest.tsv"
        gateway = self._spawn("gateway", ["gateway", "--host", "127.0.0.1", "--port",
                                          str(gateway_port), "--storage", str(self.bucket)], self._env())
        proxy = self._spawn("proxy", ["proxy", "--host", "127.0.0.1", "--port", str(proxy_port)],
                            self._env(PROXY_SECRET=secret))
        register = self._spawn("registration", ["gateway", "clients", "add", keys.client_id,
                                                "--storage", str(self.bucket), "--upload", "--download"],
                               self._env(), one_shot=True)
        link = self._spawn("link", ["link", str(share), "--manifest", str(manifest)], host_env,
                           one_shot=True)
        self.gateway_url = gateway.wait_for(r"^(http://\S+)")
        self.step(f"gateway   {self.gateway_url}  (bucket: local directory {self.bucket})")
        self.proxy_url = proxy.wait_for(r"^(http://\S+)")
        self.step(f"proxy     {self.proxy_url}")
        register.wait_done()
        self.step(f"registered the daemon's client {keys.client_id[:12]}… (upload, download)")
        link.wait_done()
        lines = [line for line in manifest.read_text().splitlines() if "sha1://" in line]
        self.step(f"linked    {plural(len(lines), 'file')} under {share}")
        config = self.resource_dir / "kachery-resource.yaml"
        config.write_text(
            f"resourceName: {RESOURCE_NAME}\nkacheryZone: {ZONE}\nmaxConcurrentUploads: 2\n"
            f"proxyUrl: {self.proxy_url}\nproxySecret: {secret}\ngatewayUrl: {self.gateway_url}\n"
            + daemon_settings)
        config.chmod(0o600)
        self.start_daemon()
        return lines

    def start_daemon(self) -> None:
        """Start the daemon (again, after :meth:`stop_daemon`) and wait until it shares."""
        env = self._env(KACHERY_CLOUD_DIR=str(self.host_dir))
        config = self.resource_dir / "kachery-resource.yaml"
        daemon = self._spawn("daemon", ["share", "--config", str(config)], env,
                             cwd=self.resource_dir)
        self.resource_url = daemon.wait_for(r"KACHERY_RESOURCE_URL=(\S+)")
        self.step(f"daemon    sharing as {self.resource_url}")

    def stop_daemon(self) -> None:
        """Kill the daemon (SIGKILL: no goodbye to the proxy)."""
        for child in [c for c in self.children if c.name == "daemon"]:
            child.proc.kill()
            child.proc.wait()
            self.children.remove(child)

    def client_settings(self, store_dir: Path) -> ClientSettings:
        """A remote client: its own store, fresh keys (the zone allows public download)."""
        keys, _ = ensure_client_keys(store_dir)
        return ClientSettings(store_dir=store_dir, gateway_url=self.gateway_url, zone=ZONE,
                              resource_url=self.resource_url, keys=keys)

    def close(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()


def plural(count: int, noun: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _bypass_http_proxies_for_loopback() -> None:
    """An HTTP_PROXY in the environment must not capture our loopback calls (nor the children's)."""
    for key in ("NO_PROXY", "no_proxy"):
        current = os.environ.get(key, "")
        if "127.0.0.1" not in current:
            os.environ[key] = ",".join(part for part in (current, "127.0.0.1", "localhost") if part)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def running_stack(workdir: Path, say: Callable[[str], None]) -> Iterator[Stack]:
    """The stack, stopped on exit, on Ctrl-C and on SIGTERM (children never outlive us)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    _bypass_http_proxies_for_loopback()
    stack = Stack(workdir, say)
    try:
        yield stack
    finally:
        stack.close()


def make_sample_tree(root: Path) -> None:
    """A small tree with a path that has spaces and non-ASCII characters."""
    (root / "notes").mkdir(parents=True, exist_ok=True)
    (root / "recordings").mkdir(exist_ok=True)
    (root / "notes" / "README.txt").write_text("A sample tree shared by kachery-resource demo.\n")
    (root / "notes" / "résumé des données.txt").write_text("Chemins avec espaces et accents.\n")
    (root / "recordings" / "session 1.bin").write_bytes(os.urandom(4 * 1024 * 1024))


def _fetch(stack: Stack, uri: str, settings: ClientSettings, label: str) -> float:
    t0 = time.monotonic()
    path = load_file(uri, settings=settings, progress=False)
    elapsed = time.monotonic() - t0
    size = Path(path).stat().st_size
    shown = Path(path).relative_to(stack.workdir) if Path(path).is_relative_to(stack.workdir) else path
    stack.step(f"{label:<9} {uri[:19]}… {size:,} bytes in {elapsed * 1000:.0f} ms → {shown}")
    return elapsed


@click.command("demo")
@click.option("--keep", is_flag=True, help="Keep the temporary workspace (logs, bucket).")
def demo_command(keep: bool) -> None:
    """Run gateway, proxy and daemon on loopback, fetch a file cold and warm, clean up."""
    workdir = Path(tempfile.mkdtemp(prefix="kachery-resource-demo-"))
    try:
        with running_stack(workdir, click.echo) as stack:
            stack.step(f"workspace {workdir}")
            sample = workdir / "sample data"
            make_sample_tree(sample)
            stack.start(sample)
            target = sample / "recordings" / "session 1.bin"
            uri = f"sha1://{sha1_of_file(target)[0]}"
            remote = stack.client_settings(workdir / "remote-kachery-cloud")
            stack.step(f"remote    client with its own store asks for {target.name!r} ({uri[:19]}…)")
            cold = _fetch(stack, uri, remote, "cold")
            warm_client = stack.client_settings(workdir / "remote-2-kachery-cloud")
            warm = _fetch(stack, uri, warm_client, "warm")
            again = _fetch(stack, uri, warm_client, "local")
            ok = Path(load_file(uri, settings=warm_client, progress=False)).read_bytes() == target.read_bytes()
            if not ok:
                raise ConfigError("the fetched bytes differ from the shared file")
            stack.step(f"done: cold {cold * 1000:.0f} ms (daemon uploaded on demand), warm "
                       f"{warm * 1000:.0f} ms (from the bucket), cached {again * 1000:.0f} ms")
    finally:
        if keep:
            click.echo(f"workspace kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    click.echo("demo OK: every process stopped")
    click.echo("next: `kachery-resource dev [DIR]` keeps this stack running and shares DIR")


@click.command("dev")
@click.argument("directory", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--gateway-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="0 picks a free port.")
@click.option("--proxy-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="0 picks a free port.")
@click.option("--keep", is_flag=True,
              help="Keep the temporary workspace (logs, bucket, stores) after Ctrl-C.")
def dev_command(directory: Path | None, gateway_port: int, proxy_port: int, keep: bool) -> None:
    """Run the whole stack on loopback sharing DIRECTORY (a sample tree if omitted) until Ctrl-C.

    Prints the environment a client in another terminal needs, its own store
    (KACHERY_CLOUD_DIR) included, so that it fetches through the stack.
    """
    workdir = Path(tempfile.mkdtemp(prefix="kachery-resource-dev-"))
    try:
        with ExitStack() as cleanup, running_stack(workdir, click.echo) as stack:
            if not keep:
                cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
            share = directory.resolve() if directory else workdir / "sample data"
            if directory is None:
                make_sample_tree(share)
            lines = stack.start(share, gateway_port, proxy_port)
            _print_client_env(stack, lines)
            _wait_for_interrupt(stack)
    except KeyboardInterrupt:
        pass
    click.echo("dev stack stopped" + (f"; workspace kept: {workdir}" if keep else ""))


def _print_client_env(stack: Stack, lines: list[str]) -> None:
    """The exports a second shell runs to be a remote client of ``stack``, and an example."""
    client_dir = stack.workdir / "remote-kachery-cloud"
    client_dir.mkdir(exist_ok=True)
    exports = {"KACHERY_GATEWAY_URL": stack.gateway_url, "KACHERY_RESOURCE_URL": stack.resource_url,
               "KACHERY_ZONE": ZONE, "KACHERY_CLOUD_DIR": str(client_dir)}
    click.echo("\nIn another terminal, a client needs:\n")
    for name, value in exports.items():
        click.echo(f"  export {name}={shlex.quote(value)}")
    example = next((line.split("\t") for line in lines if "\t" in line), None)
    if example is not None:
        uri = next(part for part in example if part.startswith("sha1://"))
        click.echo(f"  kachery-resource load {uri}    # {example[0]}")
    click.echo(f"\nthe sha1:// URI of every shared file ({len(lines)}): {stack.workdir / 'manifest.tsv'}")
    click.echo(f"logs in {stack.workdir}; Ctrl-C stops everything")


def _wait_for_interrupt(stack: Stack) -> None:
    while True:
        for child in stack.children:
            if not child.one_shot and child.proc.poll() is not None:
                raise ConfigError(f"the {child.name} stopped unexpectedly:\n{child.tail()}")
        time.sleep(0.5)


commands: list[click.Command] = [demo_command, dev_command]
