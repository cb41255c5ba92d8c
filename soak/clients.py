"""The load: client slots of every kind in CLIENT_MIX, each asking for files in a loop.

A request asks one daemon's resource through one proxy and one gateway instance, or (the
on-demand kinds) one gateway instance, which asks the zone's resources itself; 70 %
ask for files the resource has (now and then the old hash of a file edited after
linking), 30 % for unknown hashes. Every client checks the sha1 of what it got.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .deploy import Deployment

BOUND_SEC = 60.0  # a request's own limit (load_file timeout) ...
GRACE_SEC = 30.0  # ... and how much longer it may take before it counts as hung


@dataclass
class Job:
    daemon: int
    proxy: int
    gateway: int
    sha1: str
    expect: str  # exists, unknown, edited


@dataclass
class Result:
    client: str
    job: Job
    t0: float
    t1: float
    outcome: str  # ok, not-found, <documented error class>, undocumented:<type>, hung
    wrong_bytes: bool = False


def sha1_of(path: str | Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ours(dep: Deployment, job: Job, scratch: Path, keys: object) -> tuple[str, bool]:
    """Our client, ``kachery_resource.load_file``, with a store of its own per request."""
    from kachery_resource.client import load_file
    from kachery_resource.client.settings import ClientSettings
    from kachery_resource.errors import FileNotFoundOnResource, KacheryResourceError

    store = scratch / os.urandom(6).hex()
    settings = ClientSettings(store_dir=store, gateway_url=dep.gateway_url(job.gateway),
                              zone="default", keys=keys,  # type: ignore[arg-type]
                              resource_url=f"{dep.proxy_url(job.proxy)}/r/res{job.daemon}")
    try:
        path = load_file(f"sha1://{job.sha1}", settings=settings, progress=False,
                         timeout=BOUND_SEC)
        return "ok", sha1_of(path) != job.sha1
    except FileNotFoundOnResource:
        return "not-found", False
    except KacheryResourceError as exc:
        return type(exc).__name__, False
    except Exception as exc:
        return f"undocumented:{type(exc).__name__}", False
    finally:
        shutil.rmtree(store, ignore_errors=True)


WORKER = r"""
import hashlib, importlib, json, os, sys
client = importlib.import_module(sys.argv[1])  # kachery_cloud or kachery, as users run them
for line in sys.stdin:
    job = json.loads(line)
    try:
        path = client.load_file("sha1://" + job["sha1"])
        if path is None:
            out = {"outcome": "none"}
        else:
            h = hashlib.sha1(open(path, "rb").read()).hexdigest()
            os.remove(path)  # from its cache: the next request for it goes out again
            out = {"outcome": "ok", "sha1": h}
    except Exception as exc:
        out = {"outcome": "exception:" + type(exc).__name__}
    print("SOAKRESULT:" + json.dumps(out), flush=True)
"""


class Worker:
    """A released client in a process of its own (kachery-cloud 0.4.10 or kachery 2.0.3,
    configured by its environment as users configure it), bound to one gateway and, with
    ``daemon``, to that daemon's resource URL; without it the client relies on the
    gateway's on-demand path (any daemon's files)."""

    def __init__(self, dep: Deployment, kind: str, daemon: int | None, proxy: int,
                 gateway: int, home: Path, keys: object) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KACHERY_")}
        self.env["KACHERY_ZONE"] = "default"
        if kind.startswith("kachery-cloud"):
            self.module = "kachery_cloud"
            self.env.update({"KACHERY_GATEWAY_URL": dep.gateway_url(gateway),
                             "KACHERY_CLOUD_DIR": str(home),
                             "KACHERY_CLOUD_CLIENT_ID": keys.client_id,  # type: ignore[attr-defined]
                             "KACHERY_CLOUD_PRIVATE_KEY": keys.private_key_hex})  # type: ignore[attr-defined]
        else:  # kachery 2.x reads KACHERY_BASE_URL when imported: one process per gateway
            self.module = "kachery"
            self.env.update({"KACHERY_BASE_URL": dep.gateway_url(gateway),
                             "KACHERY_DIR": str(home), "KACHERY_API_KEY": dep.api_key})
        if daemon is not None:
            self.env["KACHERY_RESOURCE_URL"] = f"{dep.proxy_url(proxy)}/r/res{daemon}"
        self.daemon, self.proxy, self.gateway = daemon, proxy, gateway
        self.proc: subprocess.Popen[str] | None = None
        self._start()

    def _start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, self.module],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=self.env)
    def ask(self, job: Job) -> tuple[str, bool]:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"sha1": job.sha1}) + "\n")
        self.proc.stdin.flush()
        answer: list[str] = []
        reader = threading.Thread(target=self._read, args=(answer,), daemon=True)
        reader.start()
        reader.join(BOUND_SEC + GRACE_SEC)
        if not answer:  # hung: the next request gets a fresh process
            self.close()
            self._start()
            return "hung", False
        out = json.loads(answer[0])
        if out["outcome"] == "ok":
            return "ok", out["sha1"] != job.sha1
        return out["outcome"], False

    def _read(self, answer: list[str]) -> None:
        assert self.proc is not None and self.proc.stdout
        for line in self.proc.stdout:
            if line.startswith("SOAKRESULT:"):
                answer.append(line[len("SOAKRESULT:"):])
                return

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


#: client kinds and their share of the client slots; "on-demand" ones set no
#: KACHERY_RESOURCE_URL: the gateway fetches a missing file from the zone's announced
#: resources (kachery 2.x has no other way)
CLIENT_MIX: dict[str, float] = {"ours": 0.25, "kachery-cloud-0.4.10": 0.25,
                                "kachery-cloud-0.4.10-on-demand": 0.25,
                                "kachery-2.0.3-on-demand": 0.25}


class Load:
    """``clients`` client slots asking in a loop until :meth:`stop`."""

    def __init__(self, dep: Deployment, clients: int, seed: int, think: float) -> None:
        from kachery_resource.identity import ClientKeys

        self.dep, self.think = dep, think
        self.keys = ClientKeys.generate()
        self.results: list[Result] = []
        self.in_flight: dict[int, tuple[str, Job, float]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.scratch = dep.root / "clients"
        self.scratch.mkdir(exist_ok=True)
        kinds = [k for k, share in CLIENT_MIX.items() for _ in range(round(share * clients))]
        self.threads = [threading.Thread(target=self._slot, args=(i, kinds[i % len(kinds)],
                                                                  seed * 7919 + i), daemon=True)
                        for i in range(clients)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self, wait: float) -> None:
        self._stop.set()
        deadline = time.monotonic() + wait
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        now = time.monotonic()
        with self._lock:  # whatever is still running past its bound is hung
            for _, (client, job, t0) in self.in_flight.items():
                self.results.append(Result(client, job, t0, now, "hung"))

    def pick(self, rng: random.Random, daemon: int | None = None) -> Job:
        dep = self.dep
        d = rng.randrange(len(dep.daemons)) if daemon is None else daemon
        tree = dep.trees[d]
        if rng.random() < 0.3:
            sha1, expect = rng.randbytes(20).hex(), "unknown"
        elif tree.edited and rng.random() < 0.05:
            sha1, expect = rng.choice(sorted(tree.edited)), "edited"
        else:
            pool = sorted(set(tree.files) - set(tree.probes) - set(tree.big))
            sha1, expect = rng.choice(pool), "exists"
        return Job(d, rng.randrange(len(dep.proxies)), rng.randrange(len(dep.gateways)), sha1,
                   expect)

    def _slot(self, i: int, kind: str, seed: int) -> None:
        rng = random.Random(seed)
        ask: Callable[[Job], tuple[str, bool]]
        worker = None
        if kind == "ours":
            def ask(job: Job) -> tuple[str, bool]:
                return ours(self.dep, job, self.scratch, self.keys)
            fixed = None
        else:
            fixed = None if kind.endswith("on-demand") else i % len(self.dep.daemons)
            worker = Worker(self.dep, kind, fixed, rng.randrange(len(self.dep.proxies)),
                            rng.randrange(len(self.dep.gateways)), self.scratch / f"w{i}",
                            self.keys)
            ask = worker.ask
        try:
            while not self._stop.is_set():
                job = self.pick(rng, fixed)
                if worker is not None:
                    job.proxy, job.gateway = worker.proxy, worker.gateway
                t0 = time.monotonic()
                with self._lock:
                    self.in_flight[i] = (kind, job, t0)
                outcome, wrong = ask(job)
                with self._lock:
                    del self.in_flight[i]
                    self.results.append(Result(kind, job, t0, time.monotonic(), outcome, wrong))
                self._stop.wait(rng.uniform(0, 2 * self.think))
        finally:
            if worker is not None:
                worker.close()
