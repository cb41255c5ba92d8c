#!/usr/bin/env python3
"""Hashing a large file: the sha1 alone vs the sha1 and its chunk list in the same read.

What `link`/`store` now do for a file of more than one chunk (``chunking.ChunkRecords.
hash_file``) against what they did (``hashing.sha1_of_file``), on one file of
``--size-mib`` in the page cache (so the CPU cost shows, not the disk), alternating A/B
``--trials`` times; medians and the ratio.

Usage (from the repo root): .venv/bin/python bench/chunk_hashing.py [--size-mib 1024] [--trials 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.helpers import MIB, make_file  # noqa: E402
from kachery_resource.chunking import chunk_size_for  # noqa: E402
from kachery_resource.hashing import sha1_and_chunks_of_file, sha1_of_file  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-chunks-") as tmp:
        path = Path(tmp) / "big.bin"
        size = args.size_mib * MIB
        sha1 = make_file(path, size)
        sha1_of_file(path)  # into the page cache
        seconds: dict[str, list[float]] = {"sha1": [], "sha1+chunks": []}
        for trial in range(args.trials):
            order = ["sha1", "sha1+chunks"] if trial % 2 == 0 else ["sha1+chunks", "sha1"]
            for who in order:
                t0 = time.perf_counter()
                if who == "sha1":
                    got = sha1_of_file(path)[0]
                else:
                    got = sha1_and_chunks_of_file(path, chunk_size_for(size))[0]
                seconds[who].append(time.perf_counter() - t0)
                assert got == sha1
    a, b = (statistics.median(seconds[w]) for w in ("sha1", "sha1+chunks"))
    print(f"| file of {args.size_mib} MiB, page cache, {args.trials} trials | median s | MB/s |")
    print("|---|---|---|")
    print(f"| sha1 only (before) | {a:.2f} | {size / a / 1e6:.0f} |")
    print(f"| sha1 + chunk list, one read (now) | {b:.2f} | {size / b / 1e6:.0f} |")
    print(f"| ratio now / before | {b / a:.2f} | |")


if __name__ == "__main__":
    main()
