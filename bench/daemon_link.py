#!/usr/bin/env python3
"""`kachery-resource link` on a tree of many small files: first run vs unchanged re-run.

Creates ``--files`` small files (default 100,000) in a temporary tree, links them with a
fresh ``$KACHERY_CLOUD_DIR`` (first run: hashes and writes every record), then runs the
same command again on the unchanged tree (should take seconds), and once more after
touching 1% of the files. Each run is the real CLI in its own process.

Usage (from the repo root): .venv/bin/python bench/daemon_link.py [--files 100000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent / "kachery-resource"


def run_link(tree: Path, store: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run([str(BIN), "link", str(tree), "--manifest", str(store / "m.tsv")],
                         env={**os.environ, "KACHERY_CLOUD_DIR": str(store)},
                         capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, out.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-link-") as tmp:
        tree, store = Path(tmp) / "tree", Path(tmp) / "kc"
        store.mkdir()
        for i in range(args.files):
            d = tree / f"{i // 1000:04d}"
            if i % 1000 == 0:
                d.mkdir(parents=True)
            (d / f"f{i}.dat").write_bytes(f"file number {i}\n".encode())
        first, s1 = run_link(tree, store)
        again, s2 = run_link(tree, store)
        for i in range(0, args.files, 100):
            (tree / f"{i // 1000:04d}" / f"f{i}.dat").write_bytes(f"changed {i}\n".encode())
        touched, s3 = run_link(tree, store)
    print(f"| link {args.files:,} small files, first run | {first:.1f} s | {s1} |")
    print(f"| same tree unchanged (re-run) | {again:.1f} s | {s2} |")
    print(f"| after rewriting 1% of the files | {touched:.1f} s | {s3} |")


if __name__ == "__main__":
    main()
