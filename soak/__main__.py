"""``scripts/soak``: a distributed deployment on loopback under load and faults.

Defaults are small and bounded (about 3 minutes); the full-size run is e.g.
``scripts/soak --minutes 30 --daemons 20 --files 1000 --clients 200 --think 2.0
--max-kib 2048 --big-kib 30000 --faults 30`` (files empty to 2 MiB, a third of them up to
``--max-kib``, and three of ``--big-kib`` per daemon: about 9 GB of trees and 7 GB in the
bucket; ``--max-kib 30000`` would need about 100 GB).
Exit status 0 only when every check passes.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import checks
from .clients import BOUND_SEC, CLIENT_MIX, GRACE_SEC, Load
from .deploy import Deployment, Sizes, build
from .faults import FaultRun, fault_table, run_fault, schedule

IDLE_SEC = 35.0  # after the load: an idle aiohttp keep-alive connection lives 15–30 s


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=3.0, help="length of the load (default 3)")
    p.add_argument("--seed", type=int, default=1, help="seed of files, load and fault schedule")
    p.add_argument("--daemons", type=int, default=3, help="resources, each its own daemon")
    p.add_argument("--files", type=int, default=40, help="linked files per resource")
    p.add_argument("--max-kib", type=int, default=1024, help="largest ordinary file (KiB)")
    p.add_argument("--big-kib", type=int, default=8192,
                   help="size of the file a daemon is killed while uploading (KiB)")
    p.add_argument("--clients", type=int, default=12,
                   help=f"concurrent clients, split {CLIENT_MIX}")
    p.add_argument("--think", type=float, default=0.5,
                   help="mean pause of a client between requests (s)")
    p.add_argument("--faults", type=int, default=0,
                   help="faults to inject (default: each kind once)")
    p.add_argument("--proxies", type=int, default=3)
    p.add_argument("--gateways", type=int, default=2)
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep logs and data here (default: a temporary directory, removed)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--even-daemon-env", action="append", default=[], metavar="KEY=VALUE",
                   help="set in the environment of daemons 0, 2, 4, ... only, the odd ones "
                        "being the comparison (e.g. MALLOC_ARENA_MAX=1); repeatable")
    return p.parse_args(argv)


def sampler(dep: Deployment, stop: threading.Event) -> None:
    while not stop.wait(2.0):
        now = time.monotonic()
        for s in dep.servers():
            s.sample(now)


def say(text: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, root: Path) -> checks.Report:
    rng = random.Random(args.seed)
    sizes = Sizes(proxies=args.proxies, gateways=args.gateways, daemons=args.daemons,
                  files=args.files, max_kib=args.max_kib, big_kib=args.big_kib)
    dep = build(root, sizes, rng, say,
                dict(kv.split("=", 1) for kv in args.even_daemon_env))
    stop = threading.Event()
    load = Load(dep, args.clients, args.seed, args.think)
    faults: list[FaultRun] = []
    try:
        threading.Thread(target=sampler, args=(dep, stop), daemon=True).start()
        total = args.minutes * 60
        t_start = time.monotonic()
        warm_end = t_start + 0.15 * total
        load.start()
        say(f"load started: {args.clients} clients for {args.minutes:g} min")
        table = fault_table(load)
        plan = schedule(sorted(table), args.seed, args.faults or len(table))
        slot = 0.75 * total / max(1, len(plan))
        hold = min(30.0, slot / 3)
        fault_rng = random.Random(args.seed + 1)
        for n, name in enumerate(plan):
            time.sleep(max(0.0, warm_end + n * slot - time.monotonic()))
            say(f"fault {n + 1}/{len(plan)}: {name}")
            faults.append(run_fault(dep, load, name, table[name], fault_rng, hold))
            f = faults[-1]
            say(f"  {f.target}: " + (f"recovered in {f.recovery_sec:.2f} s"
                                     if f.recovery_sec is not None else "NOT recovered"))
        time.sleep(max(0.0, t_start + total - time.monotonic()))
        say("stopping the load")
        load.stop(BOUND_SEC + GRACE_SEC)
        stop.set()
        say(f"idle for {IDLE_SEC:g} s: open connections time out")
        time.sleep(IDLE_SEC)
        idle_fds = {s.name: s.fds() for s in dep.servers()}
        report = checks.Report()
        results = list(load.results)
        checks.check_requests(report, results)
        checks.check_on_demand(report, dep, results)
        checks.check_faults(report, faults)
        checks.check_latency(report, results, warm_end, faults)
        checks.check_resources(report, dep.servers(), idle_fds)
        checks.check_bucket(report, dep, results)
        report.info["deployment"] = (f"{len(dep.proxies)} proxies on NATS, {len(dep.gateways)} "
                                     f"gateways on SeaweedFS, {len(dep.daemons)} daemons x "
                                     f"{args.files} files, {args.clients} clients "
                                     f"{CLIENT_MIX}, seed {args.seed}")
        if args.even_daemon_env:
            report.info["environment of daemons 0, 2, 4, ..."] = args.even_daemon_env
        return report
    finally:
        stop.set()
        dep.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="kachery-soak-"))
    try:
        report = run(args, root.resolve())
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report.to_json(), indent=2) if args.json else checks.table(report))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
