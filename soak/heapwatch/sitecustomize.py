"""Diagnostic for the soak: the Python heap of a daemon, to tell a leak from allocator
retention. Put this directory on a daemon's ``PYTHONPATH``, as an absolute path (``scripts/soak
--even-daemon-env PYTHONPATH=$PWD/soak/heapwatch``); Python imports ``sitecustomize`` at
start.

In a ``kachery-resource share`` process it starts tracemalloc and writes, every 5 s, one
line ``HH:MM:SS heap_MiB peak_MiB rss_MiB`` to ``$SOAK_HEAPWATCH_DIR/heap-PID.txt``
(default /tmp). ``kill -USR2 PID`` appends the 25 places holding the most memory now
(tracebacks of 6 frames) to ``heap-PID-top.txt``. Other processes are left alone.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from types import FrameType


def _rss_mib() -> float:
    status = Path(f"/proc/{os.getpid()}/status").read_text()
    return next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS:")) / 1024


def _watch(out: Path) -> None:
    with out.open("a") as f:
        f.write(" ".join(sys.argv) + "\n")
        while True:
            time.sleep(5)
            cur, peak = tracemalloc.get_traced_memory()
            f.write(f"{time.strftime('%H:%M:%S')} {cur / 2**20:.2f} {peak / 2**20:.2f} "
                    f"{_rss_mib():.1f}\n")
            f.flush()


def _top(out: Path) -> None:
    stats = tracemalloc.take_snapshot().statistics("traceback")
    with out.open("a") as f:
        f.write(f"== {time.strftime('%H:%M:%S')} heap "
                f"{tracemalloc.get_traced_memory()[0] / 2**20:.2f} MiB\n")
        for stat in stats[:25]:
            f.write(f"{stat.size / 1024:10.1f} KiB {stat.count:7d} blocks\n")
            for line in stat.traceback.format(limit=6):
                f.write(f"    {line}\n")


def _start() -> None:
    where = Path(os.environ.get("SOAK_HEAPWATCH_DIR", "/tmp"))
    tracemalloc.start(6)
    threading.Thread(target=_watch, args=(where / f"heap-{os.getpid()}.txt",),
                     daemon=True).start()

    def on_usr2(signum: int, frame: FrameType | None) -> None:
        _top(where / f"heap-{os.getpid()}-top.txt")
    signal.signal(signal.SIGUSR2, on_usr2)


if sys.argv[1:2] == ["share"]:
    _start()
