#!/usr/bin/env python3
"""Daemon upload benchmark: our streaming, hashing PUT vs ``curl -T``, side by side.

For each bucket backend (the gateway's local directory, and SeaweedFS through the
gateway's S3 backend) it asks the gateway for two fresh signed upload URLs and PUTs a
file of ``--size-mib`` to each: one with ``curl -T``, one with the daemon's own upload
code (``daemon.uploads.put.Put``: read + sha1 + send in one pass) in a fresh process whose
peak RSS is reported. Then a real ``kachery-resource share`` process uploads a third
file end to end (request → initiate → PUT → verified finalize), timed from
the client's request to ``completed``, with the daemon's peak RSS.

With ``--against REV`` the PUT of commit REV's code runs too, in the same rounds (the
order rotates), so a change to the PUT is measured against its predecessor in the same
minutes.

Finally the cold fetch of a 1 KB file end to end on the local backend: client request →
daemon upload → findFile → download, ``--fetches`` times; p50/p90.

Usage (from the repo root): .venv/bin/python bench/daemon_upload.py [--size-mib 1024]
                                [--trials 5] [--against REV] [--no-s3] [--fetches 50]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.helpers import checkout, gateway_call, make_file, peak_rss_mb  # noqa: E402
from kachery_resource.identity import ClientKeys, signed_envelope  # noqa: E402
from kachery_resource.store import LocalFile, LocalStore  # noqa: E402
from tests.daemon.stack import add_client, request_file, start_daemon  # noqa: E402
from tests.servers import seaweedfs, start_cli  # noqa: E402

SECRET = "bench-" + secrets.token_hex(6)


def signed_put_url(gateway: str, keys: ClientKeys, sha1: str, size: int) -> tuple[str, str]:
    data = gateway_call(gateway, keys, {"type": "initiateFileUpload", "size": size,
                                        "hashAlg": "sha1", "hash": sha1, "zone": "default"})
    assert not data.get("alreadyExists"), data
    return data["signedUploadUrl"], data["objectKey"]


def curl_put(url: str, path: Path) -> tuple[float, float]:
    """Seconds and CPU seconds of ``curl -T``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(["curl", "-sS", "-f", "-T", str(path), "-o", "/dev/null", url])
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    assert status == 0, status
    return elapsed, usage.ru_utime + usage.ru_stime


def our_put(url: str, path: Path, sha1: str, src: Path | None = None) -> dict[str, float]:
    """Our PUT in a fresh process (the code in ``src``; None: this checkout)."""
    env = {**os.environ, "PYTHONPATH": str(src)} if src else None
    out = subprocess.run([sys.executable, __file__, "_put", url, str(path), sha1],
                         capture_output=True, text=True, check=True, env=env)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _put_child(url: str, path: str, sha1: str) -> None:
    """The daemon's single PUT (:class:`~kachery_resource.daemon.uploads.put.Put`), timed."""
    try:
        from kachery_resource.daemon.uploads.put import Put
    except ImportError:  # --against a commit from before daemon/uploads/
        from kachery_resource.daemon.put import Put  # type: ignore[no-redef]

    st = os.stat(path)
    local = LocalFile(sha1, Path(path), st.st_size, st.st_mtime, linked=True)
    t0, cpu0 = time.perf_counter(), time.process_time()
    result = Put(url, local, lambda n: None).run()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert result.status == 200, (result.status, result.body)
    print(json.dumps({"seconds": elapsed, "cpu": cpu, "peak_rss_mb": peak_rss_mb()}))


def bench_backend(label: str, gateway: str, proxy: str, keys: ClientKeys, files: list[Path],
                  hashes: list[str], size: int, workdir: Path, trials: int,
                  base: Path | None) -> list[str]:
    """``trials`` rounds of curl and our PUT (and commit REV's), the order rotating, each
    after a sync (fresh signed URLs, not finalized, so the same two files serve every round)."""
    who_all = ["curl", "ours"] + (["base"] if base else [])
    seconds: dict[str, list[float]] = {w: [] for w in who_all}
    cpu: dict[str, list[float]] = {w: [] for w in who_all}
    rss = dict.fromkeys(who_all, 0.0)
    for n in range(trials):
        for who in who_all[n % len(who_all):] + who_all[:n % len(who_all)]:
            os.sync()  # the previous upload's dirty pages must not slow this one down
            time.sleep(1)
            if who == "curl":
                url, _key = signed_put_url(gateway, keys, hashes[0], size)
                took, used = curl_put(url, files[0])
            else:
                url, _key = signed_put_url(gateway, keys, hashes[1], size)
                ours = our_put(url, files[1], hashes[1], base if who == "base" else None)
                took, used = ours["seconds"], ours["cpu"]
                rss[who] = max(rss[who], ours["peak_rss_mb"])
            seconds[who].append(took)
            cpu[who].append(used)
    mib = size / 2**20
    curl_s = seconds["curl"]

    def put_row(who: str, what: str) -> str:
        ratios = sorted(c / o for c, o in zip(curl_s, seconds[who], strict=True))
        best = min(seconds[who])
        return (f"| {label} | {what} (best of {trials}) | {best:.2f} s | {mib / best:.0f} MiB/s "
                f"(best/best **{min(curl_s) / best:.2f}× curl**, median of rounds "
                f"**{statistics.median(ratios):.2f}×**; rounds {', '.join(f'{r:.2f}' for r in ratios)}); "
                f"CPU {statistics.median(cpu[who]):.2f} s | {rss[who]:.0f} MB |")

    rows = [
        f"| {label} | PUT only: `curl -T` (best of {trials}) | {min(curl_s):.2f} s | "
        f"{mib / min(curl_s):.0f} MiB/s; CPU {statistics.median(cpu['curl']):.2f} s | — |",
        put_row("ours", "PUT only: daemon code, read+sha1+send"),
    ]
    if base:
        rows.append(put_row("base", "PUT only: commit REV's daemon code"))
        pairs = sorted(b / o for b, o in zip(seconds["base"], seconds["ours"], strict=True))
        rows.append(f"| {label} | speed of this checkout / REV, same rounds | | median **{statistics.median(pairs):.2f}×** "
                    f"(rounds {', '.join(f'{r:.2f}' for r in pairs)}) | |")
    # the whole daemon, end to end (includes the gateway's verified finalize)
    proc, store_dir = start_daemon(workdir / f"daemon-{label}", f"bench-{secrets.token_hex(3)}",
                                   proxy, SECRET, gateway, keys, max_uploads=2)
    try:
        LocalStore(store_dir).link(files[2], hashes[2])
        t0 = time.perf_counter()
        while request_file(proc.url, hashes[2], inner_ms=20000, outer_ms=25000)["status"] != "completed":
            pass
        elapsed = time.perf_counter() - t0
        share_rss = peak_rss_mb(proc.proc.pid)
    finally:
        proc.stop()
    rows.append(f"| {label} | `share` end to end (request → completed, incl. finalize) | "
                f"{elapsed:.2f} s | {mib / elapsed:.0f} MiB/s | {share_rss:.0f} MB |")
    for row in rows:
        print(row, flush=True)
    return rows


def bench_cold_fetch(gateway: str, proxy: str, keys: ClientKeys, workdir: Path, n: int) -> str:
    proc, store_dir = start_daemon(workdir / "daemon-fetch", f"fetch-{secrets.token_hex(3)}",
                                   proxy, SECRET, gateway, keys)
    store = LocalStore(store_dir)
    session = requests.Session()
    times = []
    try:
        for i in range(n + 3):
            src = workdir / f"small{i}"
            data = secrets.token_bytes(1024)
            src.write_bytes(data)
            sha1 = store.store_copy(src)
            t0 = time.perf_counter()
            status = request_file(proc.url, sha1)
            assert status["status"] == "completed", status
            found = session.post(f"{gateway}/api/gateway", json=signed_envelope(keys, {
                "type": "findFile", "hashAlg": "sha1", "hash": sha1, "zone": "default"})).json()
            body = session.get(found["url"]).content
            assert hashlib.sha1(body).hexdigest() == sha1
            if i >= 3:  # warm-up
                times.append((time.perf_counter() - t0) * 1000)
    finally:
        proc.stop()
    times.sort()
    p50 = statistics.median(times)
    p90 = times[int(len(times) * 0.9) - 1]
    inside = [float(m.group(1)) for line in proc.output
              if (m := re.search(r"→ completed in (\d+) ms", line))][3:]
    row = (f"| cold fetch of a 1 KB file, end to end (local-directory bucket), n={n} | "
           f"p50 {p50:.1f} ms, p90 {p90:.1f} ms | daemon's share (request in → answer out, "
           f"incl. initiate+PUT+finalize): p50 {statistics.median(inside):.0f} ms |")
    print(row, flush=True)
    return row


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_put":
        _put_child(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--fetches", type=int, default=50)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--no-s3", action="store_true", help="skip the SeaweedFS backend")
    parser.add_argument("--against", metavar="REV", help="also time commit REV's PUT, same rounds")
    args = parser.parse_args()
    size = args.size_mib * 2**20
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        base = checkout(args.against, tmp) if args.against else None
        files = [workdir / f"big{i}.bin" for i in range(3)]
        print(f"writing 3 files of {args.size_mib} MiB …", flush=True)
        hashes = [make_file(f, size) for f in files]
        keys = ClientKeys.generate()
        proxy = start_cli(["proxy", "--port", "0", "--access-log", "off"],
                          env={"PROXY_SECRET": SECRET})
        stack.callback(proxy.stop)
        local_storage = str(workdir / "gateway")
        add_client(local_storage, keys.client_id, {})
        gw = start_cli(["gateway", "--port", "0", "--storage", local_storage])
        stack.callback(gw.stop)
        print("| bucket | what | time | throughput | peak RSS |\n|---|---|---|---|---|", flush=True)
        rows = bench_backend("local dir", gw.url, proxy.url, keys, files, hashes, size, workdir,
                             args.trials, base)
        if not args.no_s3:
            s3 = stack.enter_context(seaweedfs(workdir / "s3"))
            storage = f"s3://{s3.bucket}/bench"
            env = {**s3.env(), "AWS_ENDPOINT_URL": s3.endpoint}
            add_client(storage, keys.client_id, env)
            gw_s3 = start_cli(["gateway", "--port", "0", "--storage", storage,
                               "--s3-endpoint-url", s3.endpoint], env=s3.env())
            stack.callback(gw_s3.stop)
            rows += bench_backend("SeaweedFS", gw_s3.url, proxy.url, keys, files, hashes, size,
                                  workdir, args.trials, base)
        fetch = bench_cold_fetch(gw.url, proxy.url, keys, workdir, args.fetches)
    print("\n## Daemon\n\n| bucket | what | time | throughput | peak RSS |\n|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n| measurement | result | |\n|---|---|---|\n{fetch}")
    print(f"\nload average during the run: {os.getloadavg()}")


if __name__ == "__main__":
    main()
