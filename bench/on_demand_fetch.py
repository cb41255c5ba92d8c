"""Cold 1 KB fetches: through the gateway's on-demand findFile vs through KACHERY_RESOURCE_URL.

One run of the whole stack on loopback (the processes `kachery-resource demo` starts: a
gateway over a local directory, a proxy, a daemon that announces itself). For every
fetch a fresh random file is linked on the host, so each one is cold (not in the bucket).
The three paths alternate, fetched by our client in this process with an empty store:

- **on demand**: the client knows only the gateway; its findFile misses, the gateway asks
  the daemon through the proxy, waits for the verified upload and answers found.
- **kachery 2.x findFile**: the same on-demand path through the kachery 2.x API
  (``POST /api/findFile`` with a user's API key, as our client does when
  ``KACHERY_API_KEY`` is set): the one lookup behind both API generations.
- **resource URL** (the existing path): the client also has KACHERY_RESOURCE_URL and
  signs with the daemon's own client keys, for which the gateway never fetches on demand;
  so findFile misses at once, the client asks the daemon through the proxy and calls
  findFile again after the upload.

Prints p50/p90 of each and their ratios to the resource-URL path.

    .venv/bin/python bench/on_demand_fetch.py            # 30 fetches of each path
    .venv/bin/python bench/on_demand_fetch.py --reps 60 --size 1K
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fetch_cold_warm import fmt, parse_size, write_random

from kachery_resource.client import ClientSettings, load_file
from kachery_resource.demo import ZONE, Stack
from kachery_resource.identity import ClientKeys, ensure_client_keys
from kachery_resource.store import LocalStore


def fetch(stack: Stack, uri: str, store: Path, resource_url: str | None,
          keys: ClientKeys | None, api_key: str | None) -> float:
    settings = ClientSettings(store_dir=store, gateway_url=stack.gateway_url, zone=ZONE,
                              resource_url=resource_url, keys=keys, api_key=api_key)
    t0 = time.perf_counter()
    load_file(uri, settings=settings, progress=False, timeout=60)
    return time.perf_counter() - t0


def wait_for_announcement(stack: Stack) -> None:
    log = stack.workdir / "daemon.log"
    deadline = time.monotonic() + 30
    while "announced" not in log.read_text():
        if time.monotonic() > deadline:
            raise SystemExit(f"the daemon did not announce itself:\n{log.read_text()}")
        time.sleep(0.1)


def run(size: int, reps: int, workdir: Path) -> dict[str, list[float]]:
    stack = Stack(workdir, lambda text: print(text, file=sys.stderr))
    share = workdir / "share"
    share.mkdir()
    (share / "seed.txt").write_text("seed")
    stack.start(share)
    wait_for_announcement(stack)
    host = LocalStore(stack.host_dir)
    daemon_keys, _ = ensure_client_keys(stack.host_dir)
    added = subprocess.run([str(Path(sys.executable).parent / "kachery-resource"), "gateway", "users",
                            "add", "bench", "--storage", str(stack.bucket)],
                           capture_output=True, text=True, check=True)
    api_key = added.stdout.strip().splitlines()[-1]
    paths = {"on demand": (None, None, None), "kachery 2.x findFile": (None, None, api_key),
             "resource URL": (stack.resource_url, daemon_keys, None)}
    times: dict[str, list[float]] = {name: [] for name in paths}
    try:
        for i in range(reps):
            order = list(paths)[i % 3:] + list(paths)[:i % 3]  # each path first in turn
            for name in order:
                src = share / f"{i}-{secrets.token_hex(4)}.bin"
                write_random(src, size)
                uri = f"sha1://{host.link(src)}"
                store = workdir / f"remote-{secrets.token_hex(4)}"
                times[name].append(fetch(stack, uri, store, *paths[name]))
                shutil.rmtree(store, ignore_errors=True)
                src.unlink()
            print(f"#{i + 1}: " + ", ".join(f"{n} {fmt(t[-1])}" for n, t in times.items()),
                  file=sys.stderr)
    finally:
        stack.close()
    return times


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[int(q * 10) - 1] if q < 1 else max(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1K", help="file size, default 1K")
    parser.add_argument("--reps", type=int, default=30, help="fetches of each path, default 30")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-on-demand-"))
    try:
        times = run(parse_size(args.size), args.reps, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"| path ({args.size} cold, {args.reps} each) | p50 | p90 |\n|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {fmt(statistics.median(values))} | {fmt(quantile(values, 0.9))} |")
    ru = statistics.median(times["resource URL"])
    print()
    for name in ("on demand", "kachery 2.x findFile"):
        p50 = statistics.median(times[name])
        print(f"p50 ratio {name} / resource URL: {p50 / ru:.2f}× ({(p50 - ru) * 1000:+.1f} ms); "
              f"target p50 < 50 ms → {p50 * 1000:.1f} ms ({'met' if p50 < 0.05 else 'NOT met'})")


if __name__ == "__main__":
    main()
