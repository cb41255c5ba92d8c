"""Build the deployment: NATS, SeaweedFS, proxy and gateway instances, resource daemons
each sharing its own tree of linked files (a few edited after linking) and announcing
itself to its gateway (so findFile misses are fetched on demand), a kachery 2.x user."""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from kachery_resource.servers import free_ports

from .procs import BlackHoleRelay, Service

BIN = Path(sys.executable).parent
KR = str(BIN / "kachery-resource")
BUCKET = "kachery"
PREFIX = "soak"
SECRET = "soak-" + secrets.token_hex(8)


@dataclass
class Sizes:
    proxies: int = 3
    gateways: int = 2
    daemons: int = 3
    files: int = 40  # per daemon
    max_kib: int = 1024  # largest ordinary file
    big_kib: int = 8192  # the file a daemon is killed while uploading
    edited: int = 2  # per daemon


@dataclass
class Tree:
    """One daemon's files: sha1 -> (path, bytes size); edited: old sha1 -> path."""

    files: dict[str, tuple[Path, int]] = field(default_factory=dict)
    edited: dict[str, Path] = field(default_factory=dict)
    probes: list[str] = field(default_factory=list)  # never asked by the load
    big: list[str] = field(default_factory=list)


@dataclass
class Deployment:
    root: Path
    s3: Service
    nats: Service
    proxies: list[Service]
    gateways: list[Service]
    daemons: list[Service]
    relays: list[BlackHoleRelay]
    trees: list[Tree]
    s3_env: dict[str, str]
    proxy_of: list[int]  # daemon index -> proxy index it dials
    api_key: str = ""  # of a kachery 2.x user with the download right

    def servers(self) -> list[Service]:
        return [self.s3, self.nats, *self.proxies, *self.gateways, *self.daemons]

    def proxy_url(self, i: int) -> str:
        return self.proxies[i].env["SOAK_URL"]

    def gateway_url(self, i: int) -> str:
        return self.gateways[i].env["SOAK_URL"]

    def stop(self) -> None:
        for s in reversed(self.servers()):
            s.stop()

    def s3_client(self) -> Any:
        return dep_client(self.s3_env)


def http_ok(url: str) -> bool:
    return requests.get(url, timeout=2).status_code < 500


def _s3(root: Path) -> tuple[Service, dict[str, str]]:
    access, secret = "soak" + secrets.token_hex(6), secrets.token_hex(16)
    config = root / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "admin", "credentials": [{"accessKey": access, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    p = free_ports(12)
    (root / "s3data").mkdir(exist_ok=True)
    argv = [str(BIN / "weed"), "mini", f"-dir={root / 's3data'}", "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1", "-admin.ui=false", "-webdav=false", "-master.telemetry=false",
            f"-s3.config={config}", f"-master.port={p[0]}", f"-master.port.grpc={p[1]}",
            f"-volume.port={p[2]}", f"-volume.port.grpc={p[3]}", f"-filer.port={p[4]}",
            f"-filer.port.grpc={p[5]}", f"-s3.port={p[6]}", f"-s3.port.grpc={p[7]}",
            f"-s3.port.iceberg={p[8]}", f"-s3.port.lance={p[9]}", f"-admin.port={p[10]}",
            f"-admin.port.grpc={p[11]}"]
    env = {"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret,
           "AWS_DEFAULT_REGION": "us-east-1", "SOAK_URL": f"http://127.0.0.1:{p[6]}"}

    def ready(service: Service) -> bool:
        client = dep_client(env)
        try:
            client.head_bucket(Bucket=BUCKET)
        except Exception:
            client.create_bucket(Bucket=BUCKET)
        return True
    return Service("seaweedfs", "s3", argv, env, root / "s3.log", ready,
                   ready_timeout=120), env


def dep_client(env: dict[str, str]) -> Any:
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=env["SOAK_URL"], region_name="us-east-1",
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}, connect_timeout=2,
                                      read_timeout=5))


def _nats(root: Path) -> Service:
    port, mport = free_ports(2)
    return Service("nats", "nats", [str(BIN / "nats-server"), "-a", "127.0.0.1", "-p", str(port),
                                    "-m", str(mport)],
                   {"SOAK_URL": f"nats://127.0.0.1:{port}"}, root / "nats.log",
                   lambda s: http_ok(f"http://127.0.0.1:{mport}/healthz"))


def _proxy(root: Path, i: int, nats_url: str) -> Service:
    port = free_ports(1)[0]
    url = f"http://127.0.0.1:{port}"
    return Service(f"proxy-{i}", "proxy",
                   [KR, "proxy", "--port", str(port), "--nats-url", nats_url, "--instance-id",
                    f"p{i}", "--access-log", "off", "--heartbeat-sec", "5",
                    "--tokens-file", str(root / "tokens.json")],
                   {"PROXY_SECRET": SECRET, "SOAK_URL": url}, root / f"proxy-{i}.log",
                   lambda s: http_ok(url + "/probe"))


def _gateway(root: Path, i: int, s3_env: dict[str, str]) -> Service:
    port = free_ports(1)[0]
    url = f"http://127.0.0.1:{port}"
    env = {**s3_env, "AWS_ENDPOINT_URL": s3_env["SOAK_URL"], "SOAK_URL": url}
    return Service(f"gateway-{i}", "gateway",
                   [KR, "gateway", "--port", str(port), "--storage", f"s3://{BUCKET}/{PREFIX}"],
                   env, root / f"gateway-{i}.log", lambda s: http_ok(url + "/healthz"))


def make_tree(root: Path, rng: random.Random, sizes: Sizes) -> Tree:
    """Files of random sizes (some empty), a few small probe files and one big one."""
    tree = Tree()
    root.mkdir(parents=True, exist_ok=True)
    specs = [("f", rng.choice([0, rng.randint(1, 4096), rng.randint(1, sizes.max_kib * 1024)]))
             for _ in range(sizes.files)]
    specs += [("probe", 512 + k) for k in range(30)] + [("big", sizes.big_kib * 1024)] * 3
    for n, (kind, size) in enumerate(specs):
        path = root / f"d{n % 7}" / f"{kind}{n}.bin"
        path.parent.mkdir(exist_ok=True)
        data = rng.randbytes(size)
        path.write_bytes(data)
        sha1 = hashlib.sha1(data).hexdigest()
        if kind == "probe":
            tree.probes.append(sha1)
        elif kind == "big":
            tree.big.append(sha1)
        tree.files[sha1] = (path, size)
    return tree


def edit_after_linking(tree: Tree, rng: random.Random, count: int) -> None:
    """Change the bytes of ``count`` linked files, keeping their size and mtime."""
    candidates = [s for s, (_, size) in tree.files.items()
                  if size > 0 and s not in tree.probes and s not in tree.big]
    for sha1 in rng.sample(candidates, min(count, len(candidates))):
        path, _ = tree.files.pop(sha1)
        st = path.stat()
        data = bytearray(path.read_bytes())
        data[0] ^= 0xFF
        path.write_bytes(bytes(data))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        tree.edited[sha1] = path


def build(root: Path, sizes: Sizes, rng: random.Random, say: object = print,
          even_daemon_env: dict[str, str] | None = None) -> Deployment:
    """``even_daemon_env``: added to the environment of daemons 0, 2, 4, ... only (the odd
    ones are the comparison, e.g. for a C allocator setting)."""
    from kachery_resource.identity import ClientKeys

    log = say if callable(say) else print
    root.mkdir(parents=True, exist_ok=True)
    s3, s3_env = _s3(root)
    nats = _nats(root)
    log("starting SeaweedFS and NATS")
    s3.start()
    nats.start()
    proxies = [_proxy(root, i, nats.env["SOAK_URL"]) for i in range(sizes.proxies)]
    gateways = [_gateway(root, i, s3_env) for i in range(sizes.gateways)]
    log(f"starting {len(proxies)} proxies and {len(gateways)} gateways")
    for s in (*proxies, *gateways):
        s.start()
    keys = ClientKeys.generate()
    subprocess.run([KR, "gateway", "clients", "add", keys.client_id, "--storage",
                    f"s3://{BUCKET}/{PREFIX}", "--upload", "--download"],
                   env={**os.environ, **gateways[0].env}, check=True, capture_output=True,
                   timeout=120)
    added = subprocess.run([KR, "gateway", "users", "add", "soak-reader", "--no-upload",
                            "--download", "--storage", f"s3://{BUCKET}/{PREFIX}"],
                           env={**os.environ, **gateways[0].env}, check=True,
                           capture_output=True, text=True, timeout=120)
    api_key = added.stdout.strip().splitlines()[-1]
    daemons, relays, trees, proxy_of = [], [], [], []
    log(f"making {sizes.daemons} trees of {sizes.files} files and linking them")
    for d in range(sizes.daemons):
        ddir = root / f"daemon-{d}"
        tree = make_tree(ddir / "tree", rng, sizes)
        env = {"KACHERY_CLOUD_DIR": str(ddir / "kc"), "KACHERY_CLOUD_CLIENT_ID": keys.client_id,
               "KACHERY_CLOUD_PRIVATE_KEY": keys.private_key_hex,
               **((even_daemon_env or {}) if d % 2 == 0 else {})}
        subprocess.run([KR, "link", str(ddir / "tree"), "--manifest", str(ddir / "manifest.tsv")],
                       env={**os.environ, **env}, check=True, capture_output=True, timeout=600)
        edit_after_linking(tree, rng, sizes.edited)
        p = d % len(proxies)
        relay = BlackHoleRelay(int(proxies[p].env["SOAK_URL"].rsplit(":", 1)[1]))
        relay.start()
        (ddir / "kachery-resource.yaml").write_text(
            f"resourceName: res{d}\nkacheryZone: default\nmaxConcurrentUploads: 2\n"
            f"proxyUrl: http://127.0.0.1:{relay.port}\nproxySecret: {SECRET}\n"
            f"gatewayUrl: {gateways[d % len(gateways)].env['SOAK_URL']}\n")
        logf = ddir / "daemon.log"
        daemons.append(Service(f"daemon-{d}", "daemon",
                               [KR, "share", "--config", str(ddir / "kachery-resource.yaml")],
                               env, logf, lambda s: s.log_has(r"KACHERY_RESOURCE_URL="),
                               cwd=ddir))
        relays.append(relay)
        trees.append(tree)
        proxy_of.append(p)
    log(f"starting {len(daemons)} daemons")
    for s in daemons:
        s.start()
    return Deployment(root, s3, nats, proxies, gateways, daemons, relays, trees, s3_env, proxy_of,
                      api_key)
