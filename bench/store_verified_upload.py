#!/usr/bin/env python3
"""Single uploads on an S3 zone: staged and verified by the gateway vs verified by the store.

A real ``kachery-resource gateway`` on SeaweedFS; the daemon's upload code
(``GatewayUploader.upload``: initiate → one PUT that reads, hashes and sends → finalize),
timed from initiate to the end of finalize, in rounds that alternate:

- staged: what every upload did before the gateway offered ``uploadHeaders``, and what
  kachery-cloud's client still gets: PUT to a staging key, then finalize reads the object
  back to hash it and copies it to its content key;
- direct: ``acceptsUploadHeaders``: PUT to the content key with ``x-amz-checksum-sha1``
  (the store refuses other bytes), finalize only confirms the object.

Also the gateway process's CPU seconds per upload. The object is deleted between rounds.

Usage (from the repo root): .venv/bin/python bench/store_verified_upload.py
                                [--sizes-kib 1,1024,16384,122880] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.helpers import MIB, make_file  # noqa: E402
from kachery_resource.daemon.uploads.gateway import DaemonGateway  # noqa: E402
from kachery_resource.daemon.uploads.uploader import GatewayUploader  # noqa: E402
from kachery_resource.identity import ClientKeys  # noqa: E402
from kachery_resource.store import LocalFile  # noqa: E402
from tests.daemon.stack import add_client  # noqa: E402
from tests.servers import seaweedfs, start_cli  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def upload_once(gateway_url: str, keys: ClientKeys, local: LocalFile, direct: bool) -> float:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        client = DaemonGateway(session, gateway_url, keys, "default")
        if not direct:
            async def no_headers() -> dict[str, Any]:
                return {}
            client.info = no_headers  # type: ignore[method-assign]
        await client.capabilities()
        uploader = GatewayUploader(client)
        t0 = time.perf_counter()
        assert await uploader.upload(local, lambda n: None)
        took = time.perf_counter() - t0
        uploader.close()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sizes-kib", default="1,1024,16384,122880")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) * 1024 for s in args.sizes_kib.split(",")]
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP", "/tmp")) as tmp, \
            seaweedfs(Path(tmp) / "s3") as s3:
        prefix = f"bench-{secrets.token_hex(4)}"
        storage = f"s3://{s3.bucket}/{prefix}"
        keys = ClientKeys.generate()
        add_client(storage, keys.client_id, {**s3.env(), "AWS_ENDPOINT_URL": s3.endpoint})
        gateway = start_cli(["gateway", "--port", "0", "--storage", storage,
                             "--s3-endpoint-url", s3.endpoint], env=s3.env())
        s3c = s3.client()
        print("| size | staged: initiate → PUT → finalize (read back, copy) | direct: PUT with "
              "x-amz-checksum-sha1 → finalize (confirm) | staged / direct | gateway CPU per "
              "upload, staged → direct |")
        print("|---|---|---|---|---|")
        try:
            for size in sizes:
                path = Path(tmp) / f"f{size}"
                sha1 = make_file(path, size)
                st = path.stat()
                local = LocalFile(sha1, path, size, st.st_mtime, linked=True)
                key = f"{prefix}/sha1/{sha1[:2]}/{sha1[2:4]}/{sha1[4:6]}/{sha1}"
                seconds: dict[bool, list[float]] = {False: [], True: []}
                cpu: dict[bool, list[float]] = {False: [], True: []}
                for n in range(args.rounds):
                    for direct in ((False, True) if n % 2 == 0 else (True, False)):
                        os.sync()
                        c0 = cpu_seconds(gateway.proc.pid)
                        seconds[direct].append(asyncio.run(upload_once(gateway.url, keys, local,
                                                                       direct)))
                        cpu[direct].append(cpu_seconds(gateway.proc.pid) - c0)
                        s3c.delete_object(Bucket=s3.bucket, Key=key)
                staged, direct_s = statistics.median(seconds[False]), statistics.median(seconds[True])
                shown = f"{size / MIB:g} MiB" if size >= MIB else f"{size // 1024} KiB"
                print(f"| {shown} | {staged * 1000:.0f} ms | {direct_s * 1000:.0f} ms | "
                      f"**{staged / direct_s:.2f}×** | {statistics.median(cpu[False]):.2f} s → "
                      f"{statistics.median(cpu[True]):.2f} s |", flush=True)
                path.unlink()
        finally:
            gateway.stop()
    print(f"\nmedians of {args.rounds} rounds; load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
