"""Real processes for the multipart tests and benchmark: a gateway (local directory or
SeaweedFS), a proxy, `kachery-resource share` with multipart settings — and a
:class:`FaultRelay` on the path the part bytes take (in front of SeaweedFS, or in front
of a local-directory gateway, whose signed URLs then point at the relay)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from kachery_resource.identity import ClientKeys, signed_envelope

from ..servers import S3Server, ServerProcess, start_cli
from .fault_relay import FaultRelay
from .stack import add_client

MIB = 1024 * 1024


@dataclass
class MpStack:
    kind: str  # "local" or "s3"
    gateway_url: str  # what the daemon and clients use
    proxy_url: str
    secret: str
    relay: FaultRelay
    keys: ClientKeys
    listing_root: Path | None = None
    s3: S3Server | None = None
    prefix: str = ""

    def leftovers(self) -> list[str]:
        """Every staged object, part or unfinished upload in the storage (content, client
        records and resource announcements aside)."""
        if self.listing_root is not None:
            return sorted(p.relative_to(self.listing_root).as_posix()
                          for p in self.listing_root.rglob("*")
                          if p.is_file() and not p.name.startswith(".kachery-gateway-secret")
                          and not {"clients", "resources", "sha1"} & set(p.parts))
        assert self.s3 is not None
        c = self.s3.client()
        objects = c.list_objects_v2(Bucket=self.s3.bucket, Prefix=self.prefix + "/").get("Contents", [])
        uploads = c.list_multipart_uploads(Bucket=self.s3.bucket, Prefix=self.prefix + "/").get("Uploads", [])
        return sorted([o["Key"] for o in objects
                       if not any(f"/{d}/" in o["Key"] for d in ("clients", "resources", "sha1"))]
                      + [f"(upload) {u['Key']}" for u in uploads])

    def find(self, sha1: str) -> dict[str, Any]:
        payload = {"type": "findFile", "hashAlg": "sha1", "hash": sha1, "zone": "default"}
        resp = requests.post(f"{self.gateway_url}/api/gateway",
                             json=signed_envelope(self.keys, payload), timeout=30)
        assert resp.status_code == 200, resp.text
        found: dict[str, Any] = resp.json()
        return found

    def download_sha1(self, sha1: str) -> tuple[str, int]:
        """Download the object of ``sha1`` (streamed); returns (sha1 of the bytes, size)."""
        found = self.find(sha1)
        assert found.get("found"), found
        digest, size = hashlib.sha1(), 0
        with requests.get(found["url"], stream=True, timeout=600) as resp:
            assert resp.status_code == 200
            for chunk in resp.iter_content(8 * MIB):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size


@contextmanager
def gateway_stack(kind: str, workdir: Path, s3: S3Server | None = None, proxy_url: str = "",
                  secret: str = "") -> Iterator[MpStack]:
    """A gateway on ``kind`` storage ("local" or "s3") with the fault relay in front of the
    bucket (of the gateway itself for local storage, which serves its own signed URLs)."""
    keys = ClientKeys.generate()
    relay: FaultRelay | None = None
    gateway: ServerProcess | None = None
    try:
        if kind == "local":
            root = workdir / "gateway-storage"
            storage = str(root)
            add_client(storage, keys.client_id, {})
            gateway = start_cli(["gateway", "--port", "0", "--storage", storage])
            relay = FaultRelay(gateway.url).start()
            yield MpStack(kind, relay.url, proxy_url, secret, relay, keys, listing_root=root)
        else:
            assert s3 is not None
            prefix = "mp-" + secrets.token_hex(4)
            storage = f"s3://{s3.bucket}/{prefix}"
            add_client(storage, keys.client_id, {**s3.env(), "AWS_ENDPOINT_URL": s3.endpoint})
            relay = FaultRelay(s3.endpoint).start()
            gateway = start_cli(["gateway", "--port", "0", "--storage", storage,
                                 "--s3-endpoint-url", relay.url], env=s3.env())
            relay.reset()  # the gateway's startup probe PUT through it: not the daemon's PUTs
            yield MpStack(kind, gateway.url, proxy_url, secret, relay, keys, s3=s3, prefix=prefix)
    finally:
        if gateway is not None:
            gateway.stop()
        if relay is not None:
            relay.stop()


@contextmanager
def mp_stack(kind: str, workdir: Path, s3: S3Server | None = None) -> Iterator[MpStack]:
    """:func:`gateway_stack` plus a proxy."""
    secret = "mp-" + secrets.token_hex(8)
    proxy = start_cli(["proxy", "--port", "0"], env={"PROXY_SECRET": secret})
    try:
        with gateway_stack(kind, workdir, s3, proxy.url, secret) as stack:
            yield stack
    finally:
        proxy.stop()


def start_mp_daemon(stack: MpStack, workdir: Path, name: str, settings: dict[str, Any],
                    store: Path | None = None) -> ServerProcess:
    """``kachery-resource share`` in ``workdir`` (its journal in ``workdir/.kachery-resource``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    extra = "".join(f"{k}: {v}\n" for k, v in settings.items())
    (workdir / "kachery-resource.yaml").write_text(
        f"resourceName: {name}\nmaxConcurrentUploads: 2\nproxyUrl: {stack.proxy_url}\n"
        f"proxySecret: {stack.secret}\n{extra}")
    env = {"KACHERY_CLOUD_DIR": str(store or workdir / "kc"), "KACHERY_GATEWAY_URL": stack.gateway_url,
           "KACHERY_CLOUD_CLIENT_ID": stack.keys.client_id,
           "KACHERY_CLOUD_PRIVATE_KEY": stack.keys.private_key_hex}
    return start_cli(["share"], env=env, cwd=workdir, ready=r"KACHERY_RESOURCE_URL=(\S+)")


def sparse_file(path: Path, size: int, tail: bytes = b"") -> str:
    """A sparse file of ``size`` bytes (zeros, then ``tail`` at the end); returns its sha1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size - len(tail))
        f.seek(size - len(tail))
        f.write(tail)
    digest = hashlib.sha1()
    zeros = bytes(8 * MIB)
    left = size - len(tail)
    while left:
        n = min(left, len(zeros))
        digest.update(zeros[:n] if n < len(zeros) else zeros)
        left -= n
    digest.update(tail)
    return digest.hexdigest()
