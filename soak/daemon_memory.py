"""Does the daemon's upload path leak? Its real parts in one process, measured.

``python -m soak.daemon_memory`` starts a real ``kachery-resource gateway`` over a local
directory, then runs the daemon's own JobManager and GatewayUploader (the code behind
``share``) in this process: each round uploads every file of a small tree (sizes up to
``--max-kib``), then deletes the stored objects so that the next round uploads them
again. After each round it prints the Python heap still allocated (tracemalloc, after a
garbage collection) and the resident set size. A leak grows the heap round after round;
allocator retention moves the RSS while the heap stays flat.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import requests

from kachery_resource.servers import free_ports

from .deploy import KR


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def make_files(root: Path, count: int, max_kib: int, rng: random.Random) -> dict[str, Path]:
    files = {}
    for n in range(count):
        data = rng.randbytes(rng.randint(1, max_kib * 1024))
        path = root / f"f{n}.bin"
        path.write_bytes(data)
        files[hashlib.sha1(data).hexdigest()] = path
    return files


async def rounds(url: str, files: dict[str, Path], storage: Path, n: int, keys: object,
                 top: int = 0) -> None:
    import aiohttp

    from kachery_resource.daemon.jobs import JobManager
    from kachery_resource.daemon.uploads.gateway import DaemonGateway
    from kachery_resource.daemon.uploads.uploader import GatewayUploader
    from kachery_resource.messages import UploadState
    from kachery_resource.store import LocalFile

    async def resolve(sha1: str) -> LocalFile | None:
        path = files.get(sha1)
        if path is None:
            return None
        st = path.stat()
        return LocalFile(sha1, path, st.st_size, st.st_mtime, True)

    async with aiohttp.ClientSession() as session:
        uploader = GatewayUploader(DaemonGateway(session, url, keys, "default"))  # type: ignore[arg-type]
        jobs = JobManager(resolve, uploader, 2, keep_completed_sec=0)
        print("round  uploads  heap_MiB  rss_MiB", flush=True)
        done = 0
        first: tracemalloc.Snapshot | None = None
        for r in range(n):
            statuses = await asyncio.gather(*(jobs.request(s, 120) for s in files))
            done += sum(s.status is UploadState.COMPLETED for s in statuses)
            shutil.rmtree(storage / "sha1", ignore_errors=True)  # upload them again next round
            gc.collect()
            heap = tracemalloc.get_traced_memory()[0] / 2**20
            print(f"{r:5d}  {done:7d}  {heap:8.2f}  {rss_mib():7.1f}", flush=True)
            if r == 1:  # after a round that filled what is filled once
                first = tracemalloc.take_snapshot()
        uploader.close()
        if first is not None and top:
            grown = tracemalloc.take_snapshot().compare_to(first, "traceback")
            print(f"where the heap grew from round 1 to the last (top {top}):")
            for stat in grown[:top]:
                print(f"  {stat.size_diff / 1024:+8.1f} KiB {stat.count_diff:+6d} blocks")
                for line in stat.traceback.format(limit=4):
                    print(f"      {line}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m soak.daemon_memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--max-kib", type=int, default=4096)
    p.add_argument("--top", type=int, default=0,
                   help="then print the N places whose allocations grew most since round 1")
    args = p.parse_args(argv)
    from kachery_resource.identity import ClientKeys

    work = Path(tempfile.mkdtemp(prefix="kachery-daemon-memory-"))
    storage = work / "storage"
    port = free_ports(1)[0]
    gateway = subprocess.Popen([KR, "gateway", "--port", str(port), "--storage", str(storage)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if requests.get(f"{url}/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        keys = ClientKeys.generate()
        subprocess.run([KR, "gateway", "clients", "add", keys.client_id, "--storage",
                        str(storage), "--upload"], check=True, capture_output=True)
        (work / "tree").mkdir()
        files = make_files(work / "tree", args.files, args.max_kib, random.Random(1))
        tracemalloc.start(8 if args.top else 1)
        asyncio.run(rounds(url, files, storage, args.rounds, keys, args.top))
    finally:
        gateway.kill()
        gateway.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
