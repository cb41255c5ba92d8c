"""The fault table, the seeded schedule, and recovery probes.

Every fault is injected, held, undone (a killed part is started again on its ports, a
stopped daemon continued, a black hole opened); then a probe — our client loading a
file that is in no bucket yet, so the request has to go through the restarted part —
is repeated until it succeeds. The recovery time runs from the undo (for a killed part:
the moment its restart was issued, so it includes its start-up) to that success.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .clients import Job, Load, Result, ours
from .deploy import Deployment
from .procs import Service

RECOVERY_BOUND_SEC = 120.0


@dataclass
class FaultRun:
    name: str
    target: str
    started: float
    undone: float = 0.0
    recovered: float | None = None  # monotonic time of the first successful probe
    probes: int = 0

    @property
    def recovery_sec(self) -> float | None:
        return None if self.recovered is None else self.recovered - self.undone


@dataclass
class Route:
    """Where the recovery probe goes: which daemon, through which proxy and gateway."""

    daemon: int
    proxy: int
    gateway: int


Inject = Callable[[Deployment, random.Random, float], tuple[str, Route, float]]


def _restart(service_kill: Callable[[], None], start: Callable[[], None]) -> float:
    """Kill, wait a second, start again; returns when the restart was issued."""
    service_kill()
    time.sleep(1.0)
    issued = time.monotonic()
    start()
    return issued


def proxy_kill(dep: Deployment, rng: random.Random, hold: float) -> tuple[str, Route, float]:
    p = rng.randrange(len(dep.proxies))
    s = dep.proxies[p]
    undone = _restart(s.kill, s.start)
    d = next((d for d, q in enumerate(dep.proxy_of) if q == p), 0)
    return s.name, Route(d, p, rng.randrange(len(dep.gateways))), undone


def gateway_kill(dep: Deployment, rng: random.Random, hold: float) -> tuple[str, Route, float]:
    g = rng.randrange(len(dep.gateways))
    s = dep.gateways[g]
    undone = _restart(s.kill, s.start)
    d = next((d for d in range(len(dep.daemons)) if d % len(dep.gateways) == g), 0)
    return s.name, Route(d, rng.randrange(len(dep.proxies)), g), undone


def s3_kill(dep: Deployment, rng: random.Random, hold: float) -> tuple[str, Route, float]:
    undone = _restart(dep.s3.kill, dep.s3.start)
    return dep.s3.name, Route(rng.randrange(len(dep.daemons)), rng.randrange(len(dep.proxies)),
                              rng.randrange(len(dep.gateways))), undone


def nats_kill(dep: Deployment, rng: random.Random, hold: float) -> tuple[str, Route, float]:
    undone = _restart(dep.nats.kill, dep.nats.start)
    d = rng.randrange(len(dep.daemons))
    other = (dep.proxy_of[d] + 1) % len(dep.proxies)  # across instances: through NATS
    return dep.nats.name, Route(d, other, rng.randrange(len(dep.gateways))), undone


def daemon_stop(dep: Deployment, rng: random.Random, hold: float) -> tuple[str, Route, float]:
    d = rng.randrange(len(dep.daemons))
    dep.daemons[d].signal(signal.SIGSTOP)
    time.sleep(hold)
    dep.daemons[d].signal(signal.SIGCONT)
    return (dep.daemons[d].name, Route(d, dep.proxy_of[d], rng.randrange(len(dep.gateways))),
            time.monotonic())


def daemon_blackhole(dep: Deployment, rng: random.Random, hold: float) -> tuple[str, Route, float]:
    d = rng.randrange(len(dep.daemons))
    dep.relays[d].hole(True)
    time.sleep(hold)
    dep.relays[d].hole(False)
    return (dep.daemons[d].name, Route(d, dep.proxy_of[d], rng.randrange(len(dep.gateways))),
            time.monotonic())


def make_daemon_kill_mid_upload(load: Load) -> Inject:
    def daemon_kill_mid_upload(dep: Deployment, rng: random.Random,
                               hold: float) -> tuple[str, Route, float]:
        d = rng.randrange(len(dep.daemons))
        tree = dep.trees[d]
        big = tree.big.pop(0) if len(tree.big) > 1 else tree.big[0]
        job = Job(d, dep.proxy_of[d], rng.randrange(len(dep.gateways)), big, "exists")
        asker = threading.Thread(target=lambda: load.results.append(_timed(load, dep, job)),
                                 daemon=True)
        asker.start()
        service = dep.daemons[d]
        deadline = time.monotonic() + 15
        path = str(tree.files[big][0])
        while time.monotonic() < deadline and not holds_open(service, path):
            time.sleep(0.01)  # until the daemon has the file open: it is uploading it
        seen = holds_open(service, path)
        time.sleep(0.2)
        undone = _restart(service.kill, service.start)
        target = service.name + ("" if seen else " (no upload seen)")
        return target, Route(d, dep.proxy_of[d], job.gateway), undone
    return daemon_kill_mid_upload


def holds_open(service: Service, path: str) -> bool:
    """Whether the process has ``path`` open."""
    if service.proc is None:
        return False
    fd_dir = Path(f"/proc/{service.proc.pid}/fd")
    try:
        for fd in fd_dir.iterdir():
            try:
                if os.readlink(fd) == path:
                    return True
            except OSError:
                continue
    except OSError:
        return False
    return False


def _timed(load: Load, dep: Deployment, job: Job) -> Result:
    t0 = time.monotonic()
    outcome, wrong = ours(dep, job, load.scratch, load.keys)
    return Result("ours", job, t0, time.monotonic(), outcome, wrong)


def fault_table(load: Load) -> dict[str, Inject]:
    """Every kind of fault the soak injects, by name."""
    return {"proxy-kill": proxy_kill, "gateway-kill": gateway_kill, "seaweedfs-kill": s3_kill,
            "nats-kill": nats_kill, "daemon-sigstop": daemon_stop,
            "daemon-blackhole": daemon_blackhole,
            "daemon-kill-mid-upload": make_daemon_kill_mid_upload(load)}


def schedule(names: list[str], seed: int, slots: int) -> list[str]:
    """``slots`` faults: every kind once (in a seeded order), then seeded picks."""
    rng = random.Random(seed)
    order = rng.sample(names, len(names))
    while len(order) < slots:
        order.append(rng.choice(names))
    return order[:max(slots, 0)]


def probe(dep: Deployment, load: Load, route: Route, run: FaultRun, until: float) -> None:
    """Load fresh probe files through ``route`` until one arrives (or ``until``)."""
    tree = dep.trees[route.daemon]
    while time.monotonic() < until:
        sha1 = tree.probes.pop(0) if len(tree.probes) > 1 else tree.probes[0]
        run.probes += 1
        outcome, wrong = ours(dep, Job(route.daemon, route.proxy, route.gateway, sha1, "exists"),
                              load.scratch, load.keys)
        if outcome == "ok" and not wrong:
            run.recovered = time.monotonic()
            return
        time.sleep(0.5)


def run_fault(dep: Deployment, load: Load, name: str, inject: Inject, rng: random.Random,
              hold: float) -> FaultRun:
    run = FaultRun(name, "", time.monotonic())
    run.target, route, run.undone = inject(dep, rng, hold)
    probe(dep, load, route, run, run.undone + RECOVERY_BOUND_SEC)
    return run
