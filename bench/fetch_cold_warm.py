"""Cold and warm fetches through our client and through kachery-cloud 0.4.10, on loopback.

One run of our whole stack (gateway on a local-directory bucket, proxy, daemon — the
same processes `kachery-resource demo` starts). For each size, fresh random files are
linked on the host; each is fetched *cold* (not yet in the bucket: the daemon uploads it
on demand) and then *warm* (from the bucket, by a second remote with an empty store).
Our client runs in this process; kachery-cloud runs in one worker subprocess (imported
once), each fetch with a fresh KACHERY_CLOUD_DIR. Prints medians and ratios.

For our client it also prints how long after the upload completed (the daemon's
``timestampCompleted``) the download started.

    .venv/bin/python bench/fetch_cold_warm.py                 # 1K×15, 1M×7, 100M×3, 1G×1
    .venv/bin/python bench/fetch_cold_warm.py --sizes 1K,1M --reps 5,3
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from kachery_resource.client import ClientSettings, load_file
from kachery_resource.demo import Stack
from kachery_resource.identity import ClientKeys
from kachery_resource.messages import UploadState, UploadStatus
from kachery_resource.store import LocalStore

UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3}
DEFAULT_SIZES = "1K,1M,100M,1G"
DEFAULT_REPS = "15,7,3,1"

WORKER = r"""
import json, os, sys, time
import kachery_cloud as kc
for line in sys.stdin:
    uri, store = json.loads(line)
    os.environ["KACHERY_CLOUD_DIR"] = store
    t0 = time.perf_counter()
    path = kc.load_file(uri)
    dt = time.perf_counter() - t0
    print(json.dumps({"sec": dt, "ok": path is not None}), flush=True)
"""


def parse_size(text: str) -> int:
    text = text.strip().upper()
    return int(float(text[:-1]) * UNITS[text[-1]]) if text[-1] in UNITS else int(text)


def write_random(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * 1024 * 1024)
            f.write(os.urandom(n))
            left -= n


@dataclass
class Timing:
    """What our client's progress events say about one cold fetch."""

    completed_ms: int | None = None
    download_at: float | None = None

    def upload(self, status: UploadStatus) -> None:
        if status.status is UploadState.COMPLETED and status.timestampCompleted:
            self.completed_ms = status.timestampCompleted

    def download_started(self, size: int | None) -> None:
        self.download_at = time.time()

    def downloaded(self, nbytes: int) -> None:
        pass

    def close(self) -> None:
        pass

    def gap(self) -> float | None:
        if self.completed_ms is None or self.download_at is None:
            return None
        return self.download_at - self.completed_ms / 1000


@dataclass
class Results:
    rows: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    gaps: dict[str, list[float]] = field(default_factory=dict)

    def add(self, size: str, client: str, kind: str, sec: float) -> None:
        self.rows.setdefault((size, client, kind), []).append(sec)

    def median(self, size: str, client: str, kind: str) -> float:
        return statistics.median(self.rows[(size, client, kind)])


class KacheryCloudWorker:
    """kachery-cloud 0.4.10 in a subprocess, imported once, one fetch per line."""

    def __init__(self, stack: Stack) -> None:
        keys = ClientKeys.generate()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KACHERY_")}
        env.update(KACHERY_GATEWAY_URL=stack.gateway_url, KACHERY_RESOURCE_URL=stack.resource_url,
                   KACHERY_ZONE="default", KACHERY_CLOUD_CLIENT_ID=keys.client_id,
                   KACHERY_CLOUD_PRIVATE_KEY=keys.private_key_hex,
                   KACHERY_CLOUD_DIR=str(stack.workdir / "kc-default"))
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def load(self, uri: str, store: Path) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps([uri, str(store)]) + "\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the kachery-cloud worker died")
            if line.startswith("{"):
                answer = json.loads(line)
                if not answer["ok"]:
                    raise RuntimeError(f"kachery-cloud returned None for {uri}")
                return float(answer["sec"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(30)


def ours(stack: Stack, uri: str, store: Path, timing: Timing | None = None) -> float:
    settings = ClientSettings(store_dir=store, gateway_url=stack.gateway_url, zone="default",
                              resource_url=stack.resource_url, keys=None)
    t0 = time.perf_counter()
    load_file(uri, settings=settings, progress=timing or False)
    return time.perf_counter() - t0


def run(sizes: list[str], reps: list[int], workdir: Path) -> Results:
    results = Results()
    stack = Stack(workdir, lambda text: print(text, file=sys.stderr))
    share = workdir / "share"
    share.mkdir()
    (share / "seed.txt").write_text("seed")
    stack.start(share)
    host = LocalStore(stack.host_dir)
    worker = KacheryCloudWorker(stack)
    try:
        for label, n in zip(sizes, reps, strict=True):
            size = parse_size(label)
            for i in range(n):
                for client in ("ours", "kachery-cloud"):
                    src = share / f"{label}-{client}-{i}-{secrets.token_hex(3)}.bin"
                    write_random(src, size)
                    uri = f"sha1://{host.link(src)}"
                    for kind in ("cold", "warm"):
                        store = workdir / f"remote-{secrets.token_hex(4)}"
                        if client == "ours":
                            timing = Timing() if kind == "cold" else None
                            sec = ours(stack, uri, store, timing)
                            gap = timing.gap() if timing else None
                            if gap is not None:
                                results.gaps.setdefault(label, []).append(gap)
                        else:
                            sec = worker.load(uri, store)
                        results.add(label, client, kind, sec)
                        shutil.rmtree(store, ignore_errors=True)
                    src.unlink()
                    print(f"{label} #{i + 1} {client}: cold {results.rows[(label, client, 'cold')][-1]:.3f} s, "
                          f"warm {results.rows[(label, client, 'warm')][-1]:.3f} s", file=sys.stderr)
            # the bucket keeps every object; free the disk between sizes
            for obj in stack.bucket.rglob("*"):
                if obj.is_file() and obj.stat().st_size >= size and size >= 100 * 1024**2:
                    obj.unlink()
    finally:
        worker.close()
        stack.close()
    return results


def report(results: Results, sizes: list[str], reps: list[int]) -> str:
    lines = ["| size | runs | ours cold p50 | kachery-cloud cold p50 | cold ratio (kc/ours) | "
             "ours warm p50 | kachery-cloud warm p50 | warm ratio (kc/ours) | download start after upload done (ours, max) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, n in zip(sizes, reps, strict=True):
        oc, kc = results.median(label, "ours", "cold"), results.median(label, "kachery-cloud", "cold")
        ow, kw = results.median(label, "ours", "warm"), results.median(label, "kachery-cloud", "warm")
        gaps = results.gaps.get(label)
        gap = f"{max(gaps) * 1000:.0f} ms" if gaps else "n/a"
        lines.append(f"| {label} | {n} | {fmt(oc)} | {fmt(kc)} | {kc / oc:.2f}× | {fmt(ow)} | "
                     f"{fmt(kw)} | {kw / ow:.2f}× | {gap} |")
    return "\n".join(lines)


def fmt(sec: float) -> str:
    return f"{sec * 1000:.0f} ms" if sec < 10 else f"{sec:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"default {DEFAULT_SIZES}")
    parser.add_argument("--reps", default=DEFAULT_REPS, help=f"runs per size, default {DEFAULT_REPS}")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    args = parser.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",")]
    reps = [int(r) for r in args.reps.split(",")]
    if len(sizes) != len(reps):
        parser.error("--sizes and --reps need the same number of entries")
    workdir = Path(tempfile.mkdtemp(prefix="bench-fetch-", dir=args.workdir))
    try:
        results = run(sizes, reps, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(report(results, sizes, reps))
    if "1K" in sizes:
        p50 = results.median("1K", "ours", "cold") * 1000
        print(f"\ntarget: cold 1 KB fetch, our client p50 < 50 ms → {p50:.1f} ms "
              f"({'met' if p50 < 50 else 'NOT met'})")
    for label in sizes:
        gaps = results.gaps.get(label)
        if gaps and parse_size(label) >= 1024**3:
            verdict = "met" if max(gaps) < 0.5 else "NOT met"
            print(f"target: {label} cold, download starts < 0.5 s after the upload completes → "
                  f"{max(gaps) * 1000:.0f} ms ({verdict}); total ours "
                  f"{fmt(results.median(label, 'ours', 'cold'))} vs kachery-cloud "
                  f"{fmt(results.median(label, 'kachery-cloud', 'cold'))}")


if __name__ == "__main__":
    main()
