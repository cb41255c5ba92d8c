"""Lazy reads of a file in the bucket: ``kachery_resource.open`` vs remfile 0.1.15, and a
full sequential read vs a plain download, on loopback.

One ``kachery-resource gateway`` over a local directory holds a generated HDF5 file shaped
like a recording (groups, attributes, several chunked datasets). Each round runs, in
alternating order:

- *slice*: open the file, list the groups, read a 1 MB slice from the middle of the main
  dataset — ``h5py.File(kachery_resource.open(uri))`` (including its ``findFile``) vs
  ``h5py.File(remfile.File(url))`` on the same signed URL;
- *full*: read the whole file in 8 MiB reads — ``kachery_resource.open`` (which also
  checks the sha1) vs remfile vs one plain streamed GET of the URL (``requests``), without
  and with a sha1 of the bytes (what ``load_file`` does).

Prints medians and ratios (remfile or the plain download divided by ours: above 1 means
ours is faster).

``--cold``: the file is *not* in the bucket, only linked by a daemon (gateway, proxy and
daemon as in ``kachery-resource demo``, ``uploadWholeAfterRanges: false`` unless
``--upload-whole``). Each round
reads one fresh copy through ``open()`` (the daemon uploads just the chunks the reads
need, docs/design-chunks.md) and another through the whole-file path (``load_file``:
the daemon uploads the whole file, the client downloads it, then the same reads on the
local copy), alternating which goes first. Prints the time to the 1 MB slice, the bytes
uploaded against the file size, and the goals of issue 19 (< 1 s, < 1 %).

    .venv/bin/python bench/lazy_read.py                     # 512 MiB, 5 slice / 3 full rounds
    .venv/bin/python bench/lazy_read.py --size-mib 4096 --full-rounds 1
    .venv/bin/python bench/lazy_read.py --cold --size-mib 4096 --cold-rounds 2
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import remfile
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.helpers import MIB
from kachery_resource import load_file
from kachery_resource import open as kachery_open
from kachery_resource.client import ClientSettings
from kachery_resource.client.gateway import GatewayClient
from kachery_resource.demo import Stack
from kachery_resource.gateway.keys import content_key
from tests.servers import start_cli

CHANNELS = 384
READ = 8 * MIB


def make_recording(path: Path, size: int) -> str:
    """An HDF5 file of about ``size`` bytes: 89 % int16 traces (T × 384, chunks of 1 s),
    the rest LFP, timestamps and units; returns its sha1."""
    rng = np.random.default_rng(0)
    block = rng.integers(-3000, 3000, size=(30000, CHANNELS), dtype=np.int16)  # 1 s, 22 MiB
    rows = max(1, int(size * 0.89) // (CHANNELS * 2))
    with h5py.File(path, "w") as h5:
        h5.attrs["session_description"] = "generated for bench/lazy_read.py"
        series = h5.create_group("acquisition/ElectricalSeries")
        data = series.create_dataset("data", shape=(rows, CHANNELS), dtype="i2",
                                     chunks=(30000, 64))
        data.attrs["conversion"] = 0.195e-6
        for start in range(0, rows, len(block)):
            n = min(len(block), rows - start)
            data[start:start + n] = np.roll(block, start // len(block), axis=0)[:n]
        series.create_dataset("timestamps", data=np.arange(rows // 30) / 1000.0, chunks=True)
        lfp_rows = max(1, int(size * 0.1) // (CHANNELS * 4))
        lfp = h5.create_dataset("processing/ecephys/LFP/data", shape=(lfp_rows, CHANNELS),
                                dtype="f4", chunks=(2500, 64))
        lfp[:] = rng.standard_normal((1, CHANNELS)).astype("f4")
        units = h5.create_group("units")
        units.create_dataset("spike_times", data=np.sort(rng.random(200000)) * rows / 30000)
        units.attrs["colnames"] = ["spike_times"]
        h5.create_group("general").attrs["lab"] = "kachery"
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(16 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def slice_reads(f: object) -> int:
    """List the groups and read a 1 MB slice from the middle; returns the bytes read."""
    with h5py.File(f, "r") as h5:
        groups: list[str] = []
        h5.visit(lambda name: groups.append(name) if isinstance(h5[name], h5py.Group) else None)
        data = h5["acquisition/ElectricalSeries/data"]
        rows = MIB // (CHANNELS * 2)
        mid = data.shape[0] // 2
        return int(data[mid:mid + rows].nbytes)


def ours_slice(uri: str, settings: ClientSettings) -> None:
    with kachery_open(uri, settings=settings) as f:
        slice_reads(f)


def remfile_slice(url: str) -> None:
    f = remfile.File(url)
    try:
        slice_reads(f)
    finally:
        f.close()


def ours_full(uri: str, settings: ClientSettings, size: int) -> None:
    with kachery_open(uri, settings=settings) as f:
        total = 0
        while chunk := f.read(READ):
            total += len(chunk)
        assert total == size and f.verified, (total, f.verified)


def remfile_full(url: str, size: int) -> None:
    f = remfile.File(url)
    total = 0
    try:
        while total < size:
            total += len(f.read(min(READ, size - total)))
    finally:
        f.close()


def plain_full(url: str, size: int) -> None:
    total = 0
    with requests.get(url, stream=True, timeout=600) as resp:
        resp.raise_for_status()
        for chunk in resp.iter_content(READ):
            total += len(chunk)
    assert total == size


def plain_full_sha1(url: str, size: int, sha1: str) -> None:
    """The plain download plus the sha1 check every download of ours does."""
    digest = hashlib.sha1()
    with requests.get(url, stream=True, timeout=600) as resp:
        resp.raise_for_status()
        for chunk in resp.iter_content(READ):
            digest.update(chunk)
    assert digest.hexdigest() == sha1


def rounds(variants: dict[str, Callable[[], None]], n: int) -> dict[str, float]:
    """Run every variant ``n`` times, rotating the order each round; median seconds."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for k in range(n):
        for name in names[k % len(names):] + names[:k % len(names)]:
            t0 = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=512, help="size of the HDF5 file")
    parser.add_argument("--slice-rounds", type=int, default=5)
    parser.add_argument("--full-rounds", type=int, default=3)
    parser.add_argument("--cold", action="store_true",
                        help="the file only on the daemon's machine: chunks vs the whole file")
    parser.add_argument("--cold-rounds", type=int, default=1)
    parser.add_argument("--upload-whole", action="store_true",
                        help="with --cold: leave the daemon's uploadWholeAfterRanges on (its "
                             "default), so the whole file goes up in the background meanwhile")
    args = parser.parse_args()
    if args.cold:
        cold(args)
        return
    tmp = Path(tempfile.mkdtemp(prefix="lazy-read-"))
    gateway = None
    try:
        t0 = time.perf_counter()
        source = tmp / "recording.h5"
        sha1 = make_recording(source, args.size_mib * MIB)
        size = source.stat().st_size
        storage = tmp / "storage"
        target = storage / content_key("", sha1)
        target.parent.mkdir(parents=True)
        shutil.move(source, target)
        print(f"generated {size / MIB:.0f} MiB HDF5 in {time.perf_counter() - t0:.1f} s")
        gateway = start_cli(["gateway", "--port", "0", "--storage", str(storage)])
        settings = ClientSettings(tmp / "kc", gateway.url, "default", None, None)
        with requests.Session() as session:
            found = GatewayClient(session, gateway.url, "default", None).find_file(sha1)
        assert found is not None and found.size == size
        uri, url = f"sha1://{sha1}", found.url
        ours_slice(uri, settings)  # warm the page cache and the imports
        remfile_slice(url)
        sliced = rounds({"ours": lambda: ours_slice(uri, settings),
                         "remfile": lambda: remfile_slice(url)}, args.slice_rounds)
        full = rounds({"ours": lambda: ours_full(uri, settings, size),
                       "remfile": lambda: remfile_full(url, size),
                       "plain GET": lambda: plain_full(url, size),
                       "plain GET + sha1": lambda: plain_full_sha1(url, size, sha1)},
                      args.full_rounds)
        report(size, args, sliced, full)
    finally:
        if gateway is not None:
            gateway.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def cold(args: argparse.Namespace) -> None:
    """Cold reads: chunks through ``open()`` vs the whole-file path, fresh files each round."""
    tmp = Path(tempfile.mkdtemp(prefix="lazy-read-cold-"))
    share = tmp / "share"
    share.mkdir()
    stack = Stack(tmp / "stack", lambda text: None)
    try:
        t0 = time.perf_counter()
        make_recording(share / "rec-0.h5", args.size_mib * MIB)
        for k in range(1, 2 * args.cold_rounds):  # a fresh file (sha1) per read: each is cold
            shutil.copyfile(share / "rec-0.h5", share / f"rec-{k}.h5")
            with open(share / f"rec-{k}.h5", "ab") as f:
                f.write(b"\0" * k)  # bytes past HDF5's end of file: h5py ignores them
        size = (share / "rec-0.h5").stat().st_size
        print(f"generated {2 * args.cold_rounds} × {size / MIB:.0f} MiB HDF5 in "
              f"{time.perf_counter() - t0:.1f} s; linking and starting gateway, proxy, daemon")
        whole_after = "true" if args.upload_whole else "false"
        lines = stack.start(share, daemon_settings=f"uploadWholeAfterRanges: {whole_after}\n")
        uris = {Path(line.split()[0]).name: line.split()[-1] for line in lines}
        settings = stack.client_settings(tmp / "remote")
        if "chunkUpload" not in requests.get(f"{stack.gateway_url}/api/info", timeout=10).json():
            print("NOTE: this gateway takes no chunks: the cold reads below go the whole-file way")
        times: dict[str, list[float]] = {"chunks": [], "whole": []}
        sent: list[int] = []
        for k in range(args.cold_rounds):
            ours, theirs = uris[f"rec-{2 * k}.h5"], uris[f"rec-{2 * k + 1}.h5"]

            def chunks(uri: str = ours) -> None:
                with kachery_open(uri, settings=settings) as f:
                    slice_reads(f)

            def whole(uri: str = theirs) -> None:
                slice_reads(load_file(uri, settings=settings))

            for name, run in ((("chunks", chunks), ("whole", whole)) if k % 2 == 0
                              else (("whole", whole), ("chunks", chunks))):
                t1 = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t1)
            sent.append(_chunk_bytes(stack.bucket, ours[len("sha1://"):]))
        chunk_s, whole_s = (statistics.median(times[n]) for n in ("chunks", "whole"))
        share_sent = statistics.median(sent) / size
        print(f"\nfile {size / MIB:.0f} MiB, {args.cold_rounds} round(s), load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, uploadWholeAfterRanges "
              f"{whole_after}\n")
        print("| cold: open + groups + 1 MB slice | p50 | uploaded |")
        print("|---|---|---|")
        print(f"| through chunks (`open`) | {chunk_s * 1000:.0f} ms | "
              f"{statistics.median(sent) / MIB:.1f} MiB ({share_sent * 100:.2f} %) |")
        print(f"| whole file (`load_file`, then read) | {whole_s * 1000:.0f} ms | "
              f"{size / MIB:.0f} MiB (100 %) |")
        print(f"\nwhole / chunks: {whole_s / chunk_s:.1f}×; goals: < 1 s "
              f"({'met' if chunk_s < 1 else 'NOT met'}), < 1 % uploaded "
              f"({'met' if share_sent < 0.01 else 'NOT met'})")
    finally:
        stack.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _chunk_bytes(bucket: Path, sha1: str) -> int:
    """Bytes of the chunk objects of ``sha1`` in a local-directory bucket."""
    return sum(p.stat().st_size for p in bucket.rglob(f"chunks/{sha1}/*/*")
               if p.is_file() and p.name.isdigit())


def report(size: int, args: argparse.Namespace, sliced: dict[str, float],
           full: dict[str, float]) -> None:
    load = os.getloadavg()[0]
    print(f"\nfile {size / MIB:.0f} MiB, load average {load:.1f} on {os.cpu_count()} CPUs\n")
    print("| reads | rounds | ours p50 | remfile p50 | remfile/ours |")
    print("|---|---|---|---|---|")
    print(f"| open + groups + 1 MB slice | {args.slice_rounds} | {sliced['ours'] * 1000:.0f} ms | "
          f"{sliced['remfile'] * 1000:.0f} ms | {sliced['remfile'] / sliced['ours']:.2f}× |")
    print(f"| whole file, 8 MiB reads | {args.full_rounds} | {_rate(full['ours'], size)} | "
          f"{_rate(full['remfile'], size)} | {full['remfile'] / full['ours']:.2f}× |")
    for name in ("plain GET", "plain GET + sha1"):
        print(f"\n{name}: {_rate(full[name], size)}, {full[name] / full['ours']:.2f}× ours")


def _rate(seconds: float, size: int) -> str:
    return f"{seconds:.2f} s ({size / MIB / seconds:.0f} MiB/s)"

if __name__ == "__main__":
    main()
