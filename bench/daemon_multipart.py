#!/usr/bin/env python3
"""Multipart upload benchmark: one ``curl -T`` stream vs the daemon's multipart upload.

On SeaweedFS (through the gateway's S3 backend) and on the gateway's local-directory
backend, a file of ``--size-gib`` (default 4) is uploaded twice:

- ``curl -T`` to one signed URL from ``initiateFileUpload`` (a single stream), then
  ``finalizeFileUpload`` (the gateway verifies size and sha1);
- the daemon's multipart code (``MultipartPlan`` with its default settings: parallel
  parts, ``completeMultipartUpload`` — which verifies the same way), in a fresh process
  whose peak RSS is reported;
- with ``--curl-parts``, also the ideal multipart client for the store's ceiling: the same
  parts (split off beforehand, not timed) PUT by ``--parallel`` ``curl -T`` processes at
  once, no hashing, then ``completeMultipartUpload``. If that does not beat one stream,
  the store does not let parallel parts win on this machine.

Each goes to its own gateway prefix so neither finds the other's object. Then the
crash test: a real ``kachery-resource share`` uploads ``--crash-mib`` (default 1024)
through a byte-counting relay, is killed with SIGKILL once half is uploaded, restarted,
and asked again; the relay tells how many bytes crossed twice.

Usage (repo root): .venv/bin/python bench/daemon_multipart.py [--size-gib 4] [--parallel 4] [--bodies 1]
                        [--backends s3,local] [--curl-parts] [--crash-part-mib 64,16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.helpers import MIB, gateway_call, make_file, peak_rss_mb  # noqa: E402
from kachery_resource.identity import ClientKeys  # noqa: E402
from kachery_resource.store import LocalFile, LocalStore  # noqa: E402
from tests.daemon.mp_stack import mp_stack, start_mp_daemon  # noqa: E402
from tests.daemon.stack import add_client, request_file  # noqa: E402
from tests.servers import S3Server, seaweedfs, start_cli  # noqa: E402


def curl_upload(gateway: str, keys: ClientKeys, path: Path, sha1: str, size: int) -> tuple[float, float]:
    """(seconds of the curl PUT, seconds of the verified finalize)."""
    data = gateway_call(gateway, keys, {"type": "initiateFileUpload", "size": size,
                                        "hashAlg": "sha1", "hash": sha1, "zone": "default"})
    t0 = time.perf_counter()
    out = subprocess.run(["curl", "-sS", "-T", str(path), "-o", "/dev/null", "-w", "%{http_code}",
                          data["signedUploadUrl"]], capture_output=True, text=True, check=True)
    put = time.perf_counter() - t0
    assert out.stdout.strip() == "200", out
    t0 = time.perf_counter()
    gateway_call(gateway, keys, {"type": "finalizeFileUpload", "objectKey": data["objectKey"],
                                 "hashAlg": "sha1", "hash": sha1, "size": size, "zone": "default"})
    return put, time.perf_counter() - t0


def curl_parts(gateway: str, keys: ClientKeys, path: Path, sha1: str, size: int, part_size: int,
               parallel: int, workdir: Path) -> tuple[float, float]:
    """(seconds of ``parallel`` curl processes PUTting the parts, seconds of completion)."""
    common = {"hashAlg": "sha1", "hash": sha1, "zone": "default"}
    data = gateway_call(gateway, keys, {"type": "initiateMultipartUpload", "size": size,
                                        "partSize": part_size, **common})
    key, num_parts = data["objectKey"], data["numParts"]
    urls: dict[str, str] = {}
    for first in range(1, num_parts + 1, 1000):
        numbers = list(range(first, min(num_parts, first + 999) + 1))
        urls.update(gateway_call(gateway, keys, {"type": "getMultipartUploadUrls", "objectKey": key,
                                                 "partNumbers": numbers, **common})["urls"])
    parts_dir = workdir / "curl-parts"
    parts_dir.mkdir()
    subprocess.run(["split", "-b", str(data["partSize"]), "-a", "5", "--numeric-suffixes=1",
                    str(path), f"{parts_dir}/"], check=True)
    os.sync()

    def put(number: int) -> None:
        out = subprocess.run(["curl", "-sS", "-T", str(parts_dir / f"{number:05d}"), "-o", "/dev/null",
                              "-w", "%{http_code}", urls[str(number)]],
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "200", out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(put, range(1, num_parts + 1)))
    parts_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    gateway_call(gateway, keys, {"type": "completeMultipartUpload", "objectKey": key, "size": size,
                                 **common})
    complete_s = time.perf_counter() - t0
    shutil.rmtree(parts_dir)
    return parts_s, complete_s


async def _multipart_child(gateway: str, path: str, sha1: str, private_hex: str,
                           settings_json: str) -> None:
    import aiohttp

    from kachery_resource.daemon.uploads.gateway import DaemonGateway
    from kachery_resource.daemon.uploads.multipart import MultipartPlan, MultipartSettings

    st = os.stat(path)
    local = LocalFile(sha1, Path(path), st.st_size, st.st_mtime, linked=True)
    keys = ClientKeys.from_private_hex(private_hex)
    async with aiohttp.ClientSession() as session:
        up = MultipartPlan(DaemonGateway(session, gateway, keys, "default"),
                               MultipartSettings.from_mapping(json.loads(settings_json)))
        complete_s = 0.0
        real_complete = up.api.complete

        async def timed_complete(*args: Any) -> None:
            nonlocal complete_s
            t = time.perf_counter()
            await real_complete(*args)
            complete_s += time.perf_counter() - t

        up.api.complete = timed_complete  # type: ignore[method-assign]
        t0 = time.perf_counter()
        await up.upload(local, lambda n: None)
        total = time.perf_counter() - t0
        up.close()
    print(json.dumps({"seconds": total, "complete": complete_s, "peak_rss_mb": peak_rss_mb()}))


def multipart_upload(gateway: str, keys: ClientKeys, path: Path, sha1: str,
                     settings: dict[str, Any]) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "_multipart", gateway, str(path), sha1,
                          keys.private_key_hex, json.dumps(settings)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def start_gateway(stack: ExitStack, kind: str, workdir: Path, s3: S3Server | None,
                  keys: ClientKeys) -> str:
    name = secrets.token_hex(4)
    if kind == "local":
        storage, env = str(workdir / f"gw-{name}"), {}
        add_client(storage, keys.client_id, {})
        args = ["gateway", "--port", "0", "--storage", storage]
    else:
        assert s3 is not None
        storage, env = f"s3://{s3.bucket}/bench-{name}", s3.env()
        add_client(storage, keys.client_id, {**env, "AWS_ENDPOINT_URL": s3.endpoint})
        args = ["gateway", "--port", "0", "--storage", storage, "--s3-endpoint-url", s3.endpoint]
    proc = start_cli(args, env=env)
    stack.callback(proc.stop)
    return proc.url


def bench_side_by_side(kind: str, workdir: Path, s3: S3Server | None, path: Path, sha1: str,
                       size: int, settings: dict[str, Any], with_curl_parts: bool) -> list[str]:
    keys = ClientKeys.generate()
    gib = size / 1024**3
    parallel = settings["multipartParallelParts"]
    with ExitStack() as stack:
        curl_gw = start_gateway(stack, kind, workdir, s3, keys)
        ours_gw = start_gateway(stack, kind, workdir, s3, keys)
        put_s, fin_s = curl_upload(curl_gw, keys, path, sha1, size)
        if with_curl_parts:
            parts_gw = start_gateway(stack, kind, workdir, s3, keys)
            cp_s, cp_complete = curl_parts(parts_gw, keys, path, sha1, size,
                                           settings["multipartPartSize"], parallel, workdir)
        ours = multipart_upload(ours_gw, keys, path, sha1, settings)
    curl_total, ours_total = put_s + fin_s, ours["seconds"]
    parts_s = ours_total - ours["complete"]
    mib = size / MIB
    rows = [
        f"| {kind} | `curl -T` one stream + finalize | {put_s:.1f} s + {fin_s:.1f} s = "
        f"{curl_total:.1f} s | {mib / curl_total:.0f} MiB/s | 1.00× | — |",
        f"| {kind} | multipart ({settings['multipartParallelParts']} × "
        f"{settings['multipartPartSize'] // MIB} MiB parts, "
        f"{settings['multipartParallelBodies']} streaming) + complete | {parts_s:.1f} s + "
        f"{ours['complete']:.1f} s = {ours_total:.1f} s | {mib / ours_total:.0f} MiB/s | "
        f"**{curl_total / ours_total:.2f}×** (transfer alone {put_s / parts_s:.2f}×) | "
        f"{ours['peak_rss_mb']:.0f} MB |",
    ]
    if with_curl_parts:
        total = cp_s + cp_complete
        rows.insert(1, f"| {kind} | {parallel} `curl -T` at once, one part each, no hashing + complete "
                       f"| {cp_s:.1f} s + {cp_complete:.1f} s = {total:.1f} s | {mib / total:.0f} MiB/s | "
                       f"{curl_total / total:.2f}× (transfer alone {put_s / cp_s:.2f}×) | — |")
    for row in rows:
        print(row, f"({gib:.1f} GiB)", flush=True)
    return rows


def bench_crash(kind: str, workdir: Path, s3: S3Server | None, size: int,
                settings: dict[str, Any]) -> str:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "crash.bin"
    sha1 = make_file(path, size)
    with mp_stack(kind, workdir / f"crash-{kind}", s3) as st:
        daemon_dir = workdir / f"crash-daemon-{kind}"
        LocalStore(daemon_dir / "kc").link(path, sha1)
        name = "crash-" + secrets.token_hex(3)
        daemon = start_mp_daemon(st, daemon_dir, name, settings)
        try:
            while True:
                status = request_file(daemon.url, sha1, inner_ms=50, outer_ms=5000)
                if (status.get("bytesUploaded") or 0) >= size / 2:
                    break
                time.sleep(0.02)
            at_kill = status["bytesUploaded"]
            daemon.kill()
        finally:
            daemon.stop()
        acked_before = st.relay.ok_put_bytes
        daemon = start_mp_daemon(st, daemon_dir, name, settings)
        try:
            t0 = time.perf_counter()
            while request_file(daemon.url, sha1, inner_ms=20000, outer_ms=25000)["status"] != "completed":
                pass
            resume_s = time.perf_counter() - t0
        finally:
            daemon.stop()
        assert st.download_sha1(sha1) == (sha1, size)
        resent_acked = st.relay.ok_put_bytes - size
        wasted = st.relay.put_bytes - size
    part = settings["multipartPartSize"]
    row = (f"| {kind} | {size // MIB} MiB, killed at {at_kill / size:.0%} "
           f"({acked_before // MIB} MiB acknowledged) | {part // MIB} MiB | {resent_acked} B | "
           f"{wasted / MIB:.1f} MiB ({wasted / part:.2f} parts) | {resume_s:.1f} s |")
    print(row, flush=True)
    path.unlink()
    return row


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_multipart":
        asyncio.run(_multipart_child(*sys.argv[2:7]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--size-gib", type=float, default=4)
    parser.add_argument("--part-mib", type=int, default=64)
    parser.add_argument("--parallel", type=int, default=4, help="parts in flight")
    parser.add_argument("--bodies", type=int, default=1, help="of those, bodies streaming at once")
    parser.add_argument("--crash-mib", type=int, default=1024)
    parser.add_argument("--crash-part-mib", default="64,16",
                        help="part sizes for the crash test (comma-separated)")
    parser.add_argument("--backends", default="s3,local")
    parser.add_argument("--no-side-by-side", action="store_true")
    parser.add_argument("--curl-parts", action="store_true",
                        help="also time --parallel curl processes sending the parts (the store's ceiling)")
    args = parser.parse_args()
    settings = {"multipartThreshold": 16 * MIB, "multipartPartSize": args.part_mib * MIB,
                "multipartParallelParts": args.parallel, "multipartParallelBodies": args.bodies}
    size = int(args.size_gib * 1024**3)
    kinds = args.backends.split(",")
    with tempfile.TemporaryDirectory(prefix="bench-mp-") as tmp, \
            ExitStack() as stack:
        workdir = Path(tmp)
        s3 = stack.enter_context(seaweedfs(workdir / "s3")) if "s3" in kinds else None
        if not args.no_side_by_side:
            path = workdir / "big.bin"
            sha1 = make_file(path, size)
            print("| backend | upload | seconds | throughput | ratio (curl time / ours) | peak RSS |")
            print("|---|---|---|---|---|---|")
            for kind in kinds:
                bench_side_by_side(kind, workdir, s3, path, sha1, size, settings, args.curl_parts)
            path.unlink()
        print("\n| backend | crash | part size | completed parts sent again | bytes sent twice "
              "(parts in flight at the kill) | resume to completed |")
        print("|---|---|---|---|---|---|")
        for kind in kinds if args.crash_mib else []:
            for part_mib in (int(p) for p in args.crash_part_mib.split(",")):
                bench_crash(kind, workdir / f"p{part_mib}", s3, args.crash_mib * MIB,
                            {**settings, "multipartPartSize": part_mib * MIB})
        load = os.getloadavg()
        print(f"\nload average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")


if __name__ == "__main__":
    main()
