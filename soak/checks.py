"""What the soak checks at the end, and the report (a table, or JSON)."""

from __future__ import annotations

import asyncio
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .clients import Result
from .deploy import BUCKET, PREFIX, Deployment
from .faults import FaultRun
from .procs import Lifetime, Sample, Service

GROWTH_LIMIT = 0.10
WARMUP_FRACTION = 0.25  # of the time sampled: a process's warm-up, from its own start
MIN_SAMPLES = 12  # samples after the warm-up needed to judge a lifetime
# below these, a change is noise of a small process, not a leak (reported all the same)
RSS_FLOOR_MIB, FDS_FLOOR = 4.0, 8
DOCUMENTED = {"ok", "not-found", "ResourceOfflineError", "TimeoutError_", "UploadFailedError",
              "GatewayError", "IntegrityError", "FileChangedError",
              "none"} | {f"exception:{e}" for e in ("ConnectionError", "HTTPError", "Exception",
                                                    "ReadTimeout", "ChunkedEncodingError")}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)
    latency: dict[str, dict[str, float]] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [c.__dict__ for c in self.checks],
                "outcomes": self.outcomes, "latency": self.latency, "faults": self.faults,
                "resources": self.resources, "info": self.info}


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def check_requests(report: Report, results: list[Result]) -> None:
    by_kind: dict[str, Counter[str]] = {}
    for r in results:
        by_kind.setdefault(f"{r.client}/{r.job.expect}", Counter())[r.outcome] += 1
    report.outcomes = {k: dict(v) for k, v in sorted(by_kind.items())}
    wrong = sum(r.wrong_bytes for r in results)
    report.add("wrong bytes delivered", wrong == 0, f"{wrong} of {len(results)} requests")
    hung = sum(r.outcome == "hung" for r in results)
    undocumented = Counter(r.outcome for r in results
                           if r.outcome != "hung" and r.outcome not in DOCUMENTED)
    report.add("every request ended in success or a documented error, none hung",
               hung == 0 and not undocumented,
               f"{len(results)} requests, {hung} hung, undocumented: {dict(undocumented) or 0}")
    served_wrongly = [r for r in results if r.job.expect in ("unknown", "edited")
                      and r.outcome == "ok"]
    report.add("unknown hashes and old hashes of edited files never served",
               not served_wrongly, f"{len(served_wrongly)} served")
    good = sum(r.outcome == "ok" for r in results if r.job.expect == "exists")
    report.add("files that exist were served", good > 0, f"{good} served")


def on_demand_counts(dep: Deployment) -> Counter[str]:
    """findFile misses handled on demand, by outcome, summed over the gateways' /metrics
    (since each one's last start)."""
    import requests

    counts: Counter[str] = Counter()
    for i in range(len(dep.gateways)):
        text = requests.get(f"{dep.gateway_url(i)}/metrics", timeout=10).text
        for outcome, value in re.findall(
                r'^kachery_gateway_on_demand_total\{outcome="([^"]+)"\} (\S+)$', text, re.M):
            counts[outcome] += int(float(value))
    return counts


def check_on_demand(report: Report, dep: Deployment, results: list[Result]) -> None:
    """Clients without a resource URL got files the gateways fetched from the daemons."""
    counts = on_demand_counts(dep)
    report.info["on-demand findFile misses (gateways' /metrics)"] = dict(sorted(counts.items()))
    served = sum(r.outcome == "ok" for r in results if r.client.endswith("on-demand"))
    if not any(r.client.endswith("on-demand") for r in results):
        return
    report.add("the gateways' on-demand path fetched files from the daemons",
               counts["hit"] > 0 and served > 0,
               f"{counts['hit']} fetched on demand; on-demand clients got {served} files")


def check_latency(report: Report, results: list[Result], warm_end: float,
                  faults: list[FaultRun]) -> None:
    phases: dict[str, list[float]] = {}
    for r in results:
        if r.outcome == "hung":
            continue
        phase = "warm-up" if r.t0 < warm_end else "steady"
        for f in faults:
            if f.started <= r.t0 <= (f.recovered or f.undone + 120):
                phase = f"during {f.name}"
        phases.setdefault(phase, []).append(r.t1 - r.t0)
    report.latency = {p: {"n": len(v), "p50_s": round(quantile(v, 0.5), 3),
                          "p99_s": round(quantile(v, 0.99), 3)} for p, v in sorted(phases.items())}


def check_faults(report: Report, faults: list[FaultRun]) -> None:
    report.faults = [{"fault": f.name, "target": f.target, "probes": f.probes,
                      "recovery_s": None if f.recovery_sec is None else round(f.recovery_sec, 2)}
                     for f in faults]
    lost = [f"{f.name} ({f.target})" for f in faults if f.recovered is None]
    report.add("every fault recovered (a probe succeeded through the restarted part)",
               not lost, f"{len(faults)} faults" + (f"; not recovered: {lost}" if lost else ""))


def growth(samples: list[Sample], since: float, min_span: float
           ) -> tuple[float, float, float, float] | None:
    """(fds then, fds now, rss then, rss now): medians of the first and last quarter of the
    samples taken from ``since`` (the end of the lifetime's warm-up) on; None when fewer than
    MIN_SAMPLES of them, or less than ``min_span`` seconds, are left to judge by."""
    body = [x for x in samples if x[0] >= since]
    if len(body) < MIN_SAMPLES or body[-1][0] - body[0][0] < min_span:
        return None
    k = max(2, len(body) // 4)
    first, last = body[:k], body[-k:]

    def med(xs: list[float]) -> float:
        return quantile(xs, 0.5)
    return (med([x[1] for x in first]), med([x[1] for x in last]),
            med([x[2] for x in first]), med([x[2] for x in last]))


def warm_up(services: list[Service]) -> tuple[float, float]:
    """(when the sampling began, the warm-up): a quarter of the time sampled. Every lifetime
    gets the same warm-up from its own start (or from the first sample, for a process that
    was up before the sampling began), and is judged only over at least as long again."""
    times = [x[0] for s in services for lt in s.lifetimes for x in lt.samples]
    if not times:
        return 0.0, 0.0
    return min(times), WARMUP_FRACTION * (max(times) - min(times))


def judge_lifetime(lt: Lifetime, begin: float, warm: float, n: int, last: bool
                   ) -> tuple[dict[str, Any], tuple[float, float, float, float] | None]:
    since = max(lt.started_at, begin) + warm
    g = growth(lt.samples, since, warm)
    span = (lt.samples[-1][0] - lt.started_at) / 60 if lt.samples else 0.0
    entry: dict[str, Any] = {"lifetime": n, "minutes": round(span, 1),
                             "samples": len(lt.samples)}
    if g is None:
        entry["too_short"] = (f"lifetime {n}{' (last)' if last else ''} of {span:.1f} min: "
                              f"needs {warm / 60:.1f} min warm-up and {warm / 60:.1f} min "
                              f"with {MIN_SAMPLES}+ samples after it")
    else:
        entry["rss_mib"] = [round(g[2], 1), round(g[3], 1)]
    return entry, g


def rss_grew(rss0: float, rss1: float) -> bool:
    return rss1 > rss0 * (1 + GROWTH_LIMIT) and rss1 - rss0 > RSS_FLOOR_MIB


def check_resources(report: Report, services: list[Service], idle_fds: dict[str, int]) -> None:
    """Memory, in every lifetime of every process (a restart starts a new one): medians of
    the first and last quarter after that lifetime's own warm-up. Descriptors, in the last
    lifetime: the median after warm-up against the count once the load has ended and idle
    connections closed (``idle_fds``): open connections follow the load (dozens on a busy
    proxy or gateway), a leaked descriptor stays after it. A lifetime too short to judge is
    named in the check's detail, neither passed nor failed."""
    begin, warm = warm_up(services)
    bad: list[str] = []
    short: list[str] = []
    judged = 0
    for s in services:
        watched = s.kind in ("proxy", "gateway", "daemon")
        entries = []
        for n, lt in enumerate(s.lifetimes, 1):
            last = n == len(s.lifetimes)
            entry, g = judge_lifetime(lt, begin, warm, n, last)
            entries.append(entry)
            if g is None:
                short.append(f"{s.name} {entry['too_short']}")
                continue
            judged += 1
            fds0, _, rss0, rss1 = g
            if watched and rss_grew(rss0, rss1):
                bad.append(f"{s.name} lifetime {n} rss {rss0:.1f}->{rss1:.1f} MiB")
            if last:
                idle = idle_fds.get(s.name, int(g[1]))
                entry.update(fds=[fds0, g[1]], idle_fds=idle)
                if watched and idle > fds0 * (1 + GROWTH_LIMIT) and idle - fds0 > FDS_FLOOR:
                    bad.append(f"{s.name} fds {fds0:g}->{idle:g} (idle)")
        step = max(1, len(s.samples) // 20)  # about 20 points of the last lifetime
        report.resources[s.name] = {
            "starts": s.starts, "lifetimes": entries,
            "series": [[round(t - s.lifetimes[-1].started_at), k, round(r, 1)]
                       for t, k, r in s.samples[::step]] if s.lifetimes else []}
    report.info["warm-up of every lifetime (s)"] = round(warm)
    report.add("memory flat after warm-up and no descriptor left once idle (< 10 % growth)",
               not bad, f"{judged} process lifetimes measured"
               + (f"; too short to judge: {short}" if short else "")
               + (f"; grew: {bad}" if bad else ""))


def completed_uploads(dep: Deployment) -> set[str]:
    found: set[str] = set()
    for d in dep.daemons:
        found |= set(re.findall(r"upload sha1://([0-9a-f]{40}) size=\d+ completed", d.log_text()))
    return found


def content_key(sha1: str) -> str:
    return f"{PREFIX}/sha1/{sha1[:2]}/{sha1[2:4]}/{sha1[4:6]}/{sha1}"


def in_bucket(client: Any, sha1: str) -> bool:
    try:
        client.head_object(Bucket=BUCKET, Key=content_key(sha1))
        return True
    except Exception:
        return False


def sweep(dep: Deployment) -> int:
    """Run the gateway's own sweep of unfinished uploads (any age: the load has ended)."""
    from kachery_resource.gateway.app import sweep_unfinished_uploads
    from kachery_resource.gateway.settings import load_settings
    from kachery_resource.gateway.zones import close_zones, open_zones

    os.environ.update({k: v for k, v in dep.s3_env.items() if k.startswith("AWS_")})
    os.environ["AWS_ENDPOINT_URL"] = dep.s3_env["SOAK_URL"]
    settings = load_settings(storage=f"s3://{BUCKET}/{PREFIX}")
    settings = settings.model_copy(update={"staging_max_age_sec": 0})

    async def run() -> int:
        zones = open_zones(settings)
        try:
            return await sweep_unfinished_uploads(settings, zones)
        finally:
            await close_zones(zones)
    return asyncio.run(run())


def check_bucket(report: Report, dep: Deployment, results: list[Result]) -> None:
    client = dep.s3_client()
    done = completed_uploads(dep) | {r.job.sha1 for r in results if r.outcome == "ok"}
    missing = sorted(s for s in done if not in_bucket(client, s))
    report.add("every upload reported completed is in the bucket", not missing,
               f"{len(done)} completed, {len(missing)} missing")
    removed = sweep(dep)
    left = []
    for area in ("staging", "multipart"):
        listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/{area}/")
        left += [o["Key"] for o in listed.get("Contents", [])]
    report.info["unfinished uploads swept"] = removed
    report.add("no staging or part objects left after the sweep", not left,
               f"sweep removed {removed}, {len(left)} left")
    old = [s for t in dep.trees for s in t.edited if in_bucket(client, s)]
    edited = sum(len(t.edited) for t in dep.trees)
    report.add("edited linked files never stored under their old hash", not old,
               f"{edited} edited files, {len(old)} old hashes in the bucket")


def table(report: Report) -> str:
    lines = ["CHECKS"]
    for c in report.checks:
        lines.append(f"  {'PASS' if c.ok else 'FAIL'}  {c.name}: {c.detail}")
    lines.append("OUTCOMES (client/expected: outcome count)")
    for kind, counts in report.outcomes.items():
        lines.append(f"  {kind:32} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    lines.append("FAULTS (recovery: from undo to the first success through the part)")
    for f in report.faults:
        rec = "not recovered" if f["recovery_s"] is None else f"{f['recovery_s']:.2f} s"
        lines.append(f"  {f['fault']:24} {f['target']:12} recovery {rec} ({f['probes']} probes)")
    lines.append("LATENCY per phase (n, p50, p99)")
    for phase, v in report.latency.items():
        lines.append(f"  {phase:32} n={v['n']:<6} p50 {v['p50_s']:.3f} s  p99 {v['p99_s']:.3f} s")
    lines.append("SERVERS (per lifetime: RSS MiB after its warm-up -> its end; last lifetime: "
                 "fds after warm-up -> end (once idle))")
    for name, r in report.resources.items():
        for lt in r["lifetimes"]:
            head = f"  {name:12} #{lt['lifetime']} {lt['minutes']:5.1f} min"
            if "rss_mib" not in lt:
                lines.append(f"{head}  too short to judge ({lt['samples']} samples)")
                continue
            fds = (f"  fds {lt['fds'][0]:g} -> {lt['fds'][1]:g} (idle {lt['idle_fds']:g})"
                   if "fds" in lt else "")
            lines.append(f"{head}  rss {lt['rss_mib'][0]} -> {lt['rss_mib'][1]}{fds}")
    for k, v in report.info.items():
        lines.append(f"{k}: {v}")
    lines.append("RESULT: " + ("PASS" if report.passed else "FAIL"))
    return "\n".join(lines)
