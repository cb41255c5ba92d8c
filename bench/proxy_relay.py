#!/usr/bin/env python3
"""Benchmark the proxy the way ../shared/docs/BASELINE.md measured the old TypeScript one.

Runs, on 127.0.0.1, `kachery-resource proxy` and a daemon that answers `not-found`
(our `kachery-resource share` with an empty store, and/or the minimal
`bench/proxy_notfound_daemon.py`), then the shared load scripts unchanged:

- relay: `wrk -t2 -c{N} -d{D}s --timeout 10s -s post.lua URL/r/bench1` for N in 1,10,100,500
  (wrk needs threads <= connections, so N=1 uses -t1); median of --runs runs; CPU of
  proxy and daemon during each run (proctree.py);
- idle daemons: `ws_idle.py --n 1000` and `--n 5000` (needs the `websockets` package; pass
  --ws-python to a Python that has it), proxy RSS before/after;
- fan-in: `fanin.py --mode raw --n 200`, median of --runs runs.

With `--against REV` it instead compares this checkout with commit REV's code: both
stacks run side by side and their wrk runs alternate (ABBA), --runs rounds per daemon and
connection count, so a host whose speed drifts moves both sides alike.

`old-model` (as a daemon kind, or as REV) is `bench/old_model/`: a Node model of the old
proxy's and daemon's relay path (Express + ws, every reply offered to every waiter,
strict checks, a store lookup), written from BASELINE.md and RESOURCE-PROTOCOL.md, since
the old programs cannot be installed here. `--daemons old-model` measures it alone (to
hold it against BASELINE.md's numbers); `--against old-model` runs it side by side with
this checkout, which gives the old-vs-new ratio of the same hour: with `--daemons ours`
the model's daemon is on its side, with `--daemons minimal` the minimal daemon serves both
proxies (the proxies alone). When --daemons names old-model, idle daemons and fan-in
(with the minimal daemon) are measured on the model's proxy too.
Needs `node` and `npm install` in bench/old_model.

Prints a Markdown report with the baseline beside each number and a JSON line
(`PROXYBENCH {...}`). Usage:
  bench/proxy_relay.py [--daemons ours,minimal] [--duration 10] [--runs 3]
                       [--shared ../shared/bench] [--ws-python /path/to/python]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.helpers import checkout  # noqa: E402

BIN = Path(sys.executable).parent
SECRET = "bench-secret"
BASE_RPS = {1: 1628, 10: 3988, 100: 3857, 500: 4335}
BASE_P50_MS = {1: 0.56, 10: 2.1, 100: 24, 500: 92}
BASE_AB = {1: (1625, 1, 1), 10: (4405, 2, 9), 100: (4961, 18, 57), 500: (4393, 106, 217)}
BASE_IDLE = {1000: (66.9, 9.6, 0.61), 5000: (104.0, 9.6, 4.0)}
BASE_FANIN_MS = 54
OLD_MODEL = "old-model"
OLD_MODEL_DIR = ROOT / "bench" / "old_model"


def start(cmd: list[str], ready: str, env: dict[str, str] | None = None,
          timeout: float = 60) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(ready, line)
        if m:
            # keep draining output so the child never blocks on a full pipe
            subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL)
            return proc, m.group(1) if m.groups() else line
    proc.kill()
    raise SystemExit(f"{cmd[0]} did not become ready:\n{''.join(seen)}")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def proctree(shared: Path, *args: str) -> str:
    return subprocess.run([sys.executable, str(shared / "proctree.py"), *args],
                          capture_output=True, text=True, check=True).stdout.strip()


ACCESS_LOG = ["off"]


def code_env(src: Path | None) -> dict[str, str]:
    """Environment that runs the kachery_resource package in ``src`` (None: this checkout)."""
    return {} if src is None else {"PYTHONPATH": str(src)}


def start_proxy(src: Path | None = None) -> tuple[subprocess.Popen[str], str]:
    return start([str(BIN / "kachery-resource"), "proxy", "--host", "127.0.0.1", "--port", "0",
                  "--access-log", ACCESS_LOG[0], "--max-connections-per-ip", "0"],
                 r"(http://127\.0\.0\.1:\d+)", {"PROXY_SECRET": SECRET, **code_env(src)})


def start_daemon(kind: str, url: str, workdir: Path, src: Path | None = None) -> subprocess.Popen[str]:
    if kind == "minimal":
        proc, _ = start([sys.executable, str(ROOT / "bench" / "proxy_notfound_daemon.py"),
                         "--url", url, "--secret", SECRET], r"(READY)")
        return proc
    from kachery_resource.identity import ClientKeys

    keys = ClientKeys.generate()
    kc = workdir / "kc"
    kc.mkdir(exist_ok=True)
    config = workdir / "kachery-resource.yaml"
    config.write_text(f"resourceName: bench1\nkacheryZone: default\nmaxConcurrentUploads: 2\n"
                      f"proxyUrl: {url}\nproxySecret: {SECRET}\n")
    proc, _ = start([str(BIN / "kachery-resource"), "share", "--config", str(config)],
                    r"KACHERY_RESOURCE_URL=(\S+)",
                    {"KACHERY_CLOUD_DIR": str(kc), "KACHERY_CLOUD_CLIENT_ID": keys.client_id,
                     "KACHERY_CLOUD_PRIVATE_KEY": keys.private_key_hex, **code_env(src)})
    return proc


def start_any_proxy(stack: ExitStack, which: str,
                    src: Path | None = None) -> tuple[subprocess.Popen[str], str]:
    """Our proxy (code in ``src``, None: this checkout), or the old model's (``which`` =
    old-model), stopped with ``stack``."""
    if which != OLD_MODEL:
        proxy, url = start_proxy(src)
    elif not (OLD_MODEL_DIR / "node_modules").is_dir():
        raise SystemExit(f"the old model needs its packages: cd {OLD_MODEL_DIR} && npm install")
    else:
        proxy, url = start(["node", str(OLD_MODEL_DIR / "proxy.js")], r"(http://127\.0\.0\.1:\d+)",
                           {"PROXY_SECRET": SECRET, "PORT": "0"})
    stack.callback(stop, proxy)
    return proxy, url


def start_stack(stack: ExitStack, kind: str, workdir: Path, src: Path | None = None,
                proxy_kind: str = "ours") -> tuple[str, dict[str, int]]:
    """A proxy (ours or old-model) and a daemon of ``kind`` (ours, minimal, old-model),
    stopped with ``stack``; returns the proxy URL and the processes' pids."""
    proxy, url = start_any_proxy(stack, proxy_kind, src)
    if kind == OLD_MODEL:
        daemon, _ = start(["node", str(OLD_MODEL_DIR / "daemon.js"), url, SECRET], r"(READY)",
                          {"KACHERY_CLOUD_DIR": str(workdir / "kc")})
    else:
        daemon = start_daemon(kind, url, workdir, src)
    stack.callback(stop, daemon)
    return url, {"proxy": proxy.pid, "daemon": daemon.pid}


def wrk(shared: Path, url: str, conns: int, duration: int, pids: dict[str, int]) -> dict[str, float]:
    threads = 1 if conns < 2 else 2
    cpu0 = {k: float(proctree(shared, "cpu", str(p))) for k, p in pids.items()}
    t0 = time.monotonic()
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--timeout", "10s",
                          "-s", str(shared / "post.lua"), f"{url}/r/bench1"],
                         capture_output=True, text=True, env={**os.environ, "RESOURCE": "bench1"},
                         cwd=shared, check=True).stdout
    wall = time.monotonic() - t0
    cpu1 = {k: float(proctree(shared, "cpu", str(p))) for k, p in pids.items()}
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    res: dict[str, float] = json.loads(line[8:])
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    for k in pids:
        res[f"cpu_{k}_pct"] = round(100 * (cpu1[k] - cpu0[k]) / wall, 1)
    return res


AB_BODY = ('{"type":"requestFromClient","resourceName":"bench1","zone":"default","request":'
           '{"type":"fileUpload","uri":"sha1://0123456789abcdef0123456789abcdef01234567",'
           '"timeoutMsec":5000},"timeoutMsec":10000}')  # the body post.lua sends


def ab(url: str, conns: int, duration: int) -> dict[str, float]:
    """The baseline's cross-check: ``ab -k`` with the same body; req/s, p50 and p99 in ms."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as body:
        body.write(AB_BODY)
        body.flush()
        out = subprocess.run(["ab", "-k", "-q", "-t", str(duration), "-n", "10000000",
                              "-c", str(conns), "-p", body.name, "-T", "application/json",
                              f"{url}/r/bench1"], capture_output=True, text=True, check=True).stdout

    def num(pattern: str) -> float:
        m = re.search(pattern, out)
        return float(m.group(1)) if m else 0.0

    return {"rps": num(r"Requests per second:\s+([\d.]+)"), "p50_ms": num(r"\n\s+50%\s+(\d+)"),
            "p99_ms": num(r"\n\s+99%\s+(\d+)"), "failed": num(r"Failed requests:\s+(\d+)"),
            "non2xx": num(r"Non-2xx responses:\s+(\d+)")}


def relay(shared: Path, kind: str, conns_list: list[int], duration: int, runs: int,
          with_ab: bool) -> dict[int, dict[str, float]]:
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        url, pids = start_stack(stack, kind, Path(tmp), proxy_kind=kind)
        wrk(shared, url, 10, 2, {})  # warm-up
        for conns in conns_list:
            samples = []
            for _ in range(runs):
                proctree(shared, "waitidle", "60", "20")
                samples.append(wrk(shared, url, conns, duration, pids))
            med = sorted(samples, key=lambda s: s["rps"])[len(samples) // 2]
            med["rps_all"] = [s["rps"] for s in samples]  # type: ignore[assignment]
            if with_ab:
                proctree(shared, "waitidle", "60", "20")
                med.update({f"ab_{k}": v for k, v in ab(url, conns, duration).items()})
            results[conns] = med
            print(f"# {kind} c={conns}: {med['rps_all']} req/s, p50 {med['lat_p50_us']} us",
                  file=sys.stderr, flush=True)
    return results


def compare(shared: Path, kind: str, conns: int, duration: int, rounds: int, rev: str) -> str:
    """This checkout against commit ``rev`` (or the old model): both stacks (proxy and
    daemon) run side by side, and their wrk runs alternate (ABBA), so that a host whose
    speed drifts, as these VMs' does, moves both sides alike. Returns a Markdown table of
    the paired rounds."""
    rows, ratios, ours_rps, base_rps = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        # against the old model: our daemon's counterpart is the model's daemon; the minimal
        # daemon serves both proxies, which compares the proxies alone
        sides: list[tuple[str, str, Path | None, str]] = [("this", kind, None, "ours")]
        if rev == OLD_MODEL:
            sides.append(("base", OLD_MODEL if kind == "ours" else kind, None, OLD_MODEL))
        else:
            sides.append(("base", kind, checkout(rev, tmp), "ours"))
        urls, pids = {}, {}
        for side, side_kind, src, proxy_kind in sides:
            (Path(tmp) / side).mkdir()
            urls[side], pids[side] = start_stack(stack, side_kind, Path(tmp) / side, src,
                                                 proxy_kind)
            wrk(shared, urls[side], 10, 2, {})  # warm-up
        for n in range(rounds):
            got = {}
            for side in ("this", "base") if n % 2 == 0 else ("base", "this"):
                proctree(shared, "waitidle", "60", "20")
                got[side] = wrk(shared, urls[side], conns, duration, pids[side])
            ratio = got["this"]["rps"] / got["base"]["rps"]
            ratios.append(ratio)
            ours_rps.append(got["this"]["rps"])
            base_rps.append(got["base"]["rps"])
            rows.append(f"| {n + 1} | {got['this']['rps']:,.0f} | {got['base']['rps']:,.0f} | "
                        f"{ratio:.2f} | {got['this']['lat_p99_us'] / 1000:.1f} / "
                        f"{got['base']['lat_p99_us'] / 1000:.1f} |")
            print(f"# {kind} c={conns} round {n + 1}: this {got['this']['rps']:,.0f}, "
                  f"{rev} {got['base']['rps']:,.0f} req/s", file=sys.stderr, flush=True)
    head = [f"| round | this checkout req/s | {rev} req/s | ratio | p99 ms this / {rev} |",
            "|---|---|---|---|---|"]
    tail = (f"\n\n{kind} daemon, {conns} connections, {rounds} rounds of {duration} s: median "
            f"ratio **{statistics.median(ratios):.2f}** (range {min(ratios):.2f}–{max(ratios):.2f}); "
            f"median req/s {statistics.median(ours_rps):,.0f} against "
            f"{statistics.median(base_rps):,.0f}.")
    return "\n".join(head + rows) + tail


def idle(shared: Path, ws_python: str, n: int, which: str) -> dict[str, object]:
    with ExitStack() as stack:
        proxy, url = start_any_proxy(stack, which)
        time.sleep(1)
        out = subprocess.run([ws_python, str(shared / "ws_idle.py"), "--url", "ws" + url[4:],
                              "--secret", SECRET, "--n", str(n), "--pid", str(proxy.pid)],
                             capture_output=True, text=True, check=True).stdout
        line = next(x for x in out.splitlines() if x.startswith("WSJSON "))
        res: dict[str, object] = json.loads(line[7:])
        return res


def fanin(shared: Path, runs: int, which: str) -> list[dict[str, object]]:
    """``fanin.py`` against our proxy or the old model's (``which``), with the minimal daemon."""
    out = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        url, _ = start_stack(stack, "minimal", Path(tmp), proxy_kind=which)
        for _ in range(runs):
            proctree(shared, "waitidle", "60", "20")
            text = subprocess.run([sys.executable, str(shared / "fanin.py"), "--url", url,
                                   "--resource", "bench1", "--n", "200", "--mode", "raw"],
                                  capture_output=True, text=True, check=True).stdout
            out.append(json.loads(next(x for x in text.splitlines()
                                       if x.startswith("FANJSON "))[8:]))
    return out


def _ab_cells(r: dict[str, float], c: int) -> str:
    if "ab_rps" not in r:
        return "— | —"
    old = BASE_AB[c]
    bad = f", {int(r['ab_failed'] + r['ab_non2xx'])} failed" if r["ab_failed"] + r["ab_non2xx"] else ""
    return (f"{r['ab_rps']:,.0f} ({old[0]:,}){bad} | {r['ab_p50_ms']:.0f} / {r['ab_p99_ms']:.0f} "
            f"({old[1]} / {old[2]})")


def report(rel: dict[str, dict[int, dict[str, float]]],
           idles: dict[str, dict[int, dict[str, object]]],
           fans: dict[str, list[dict[str, object]]]) -> str:
    lines = ["| daemon | connections | req/s (median) | runs | ratio vs old | p50 ms (old) | "
             "p99 ms | non-2xx | CPU proxy / daemon % | ab -k: req/s (old) | ab p50 / p99 ms (old) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for kind, by_conns in rel.items():
        for c, r in by_conns.items():
            lines.append(
                f"| {kind} | {c} | {r['rps']:,.0f} | {', '.join(f'{x:,.0f}' for x in r['rps_all'])} "  # type: ignore[attr-defined]
                f"| {r['rps'] / BASE_RPS[c]:.2f}x | {r['lat_p50_us'] / 1000:.2f} ({BASE_P50_MS[c]}) "
                f"| {r['lat_p99_us'] / 1000:.1f} | {int(r['non2xx'])} "
                f"| {r['cpu_proxy_pct']:.0f} / {r['cpu_daemon_pct']:.0f} | {_ab_cells(r, c)} |")
    if idles:
        lines += ["", "| proxy | idle daemons | acknowledged | RSS before → after | per daemon "
                  "| old per daemon | time to accept all (old) |", "|---|---|---|---|---|---|---|"]
        for which, by_n in idles.items():
            for n, got in by_n.items():
                before, after = int(str(got["rss_before_kb"])), int(str(got["rss_after_kb"]))
                lines.append(f"| {which} | {n:,} | {got['ok']} | {before / 1024:.1f} → "
                             f"{after / 1024:.1f} MB | {(after - before) / n:.1f} KB | "
                             f"{BASE_IDLE[n][1]} KB | {got['connect_s']} s ({BASE_IDLE[n][2]} s) |")
    for which, fan in fans.items():
        walls = sorted(1000 * float(f["wall_s"]) for f in fan)  # type: ignore[arg-type]
        lines += ["", f"Fan-in of 200 (`fanin.py --mode raw --n 200`), {which} proxy: median "
                  f"{statistics.median(walls):.0f} ms over {len(walls)} runs "
                  f"({', '.join(f'{w:.0f}' for w in walls)}), old proxy {BASE_FANIN_MS} ms; "
                  f"all answered 200: {all(f['ok'] == 200 for f in fan)}."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "bench")
    p.add_argument("--daemons", default="ours,minimal")
    p.add_argument("--conns", default="1,10,100,500")
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--ws-python", default=None, help="Python with `websockets` for ws_idle.py")
    p.add_argument("--idle", default="1000,5000")
    p.add_argument("--skip-fanin", action="store_true")
    p.add_argument("--ab", action="store_true", help="also run `ab -k` once per row (p50/p99)")
    p.add_argument("--access-log", default="off", help="proxy --access-log (off, -, FILE)")
    p.add_argument("--against", metavar="REV", default=None,
                   help="instead: alternate runs against commit REV's code (or old-model), "
                        "side by side")
    a = p.parse_args()
    ACCESS_LOG[0] = a.access_log
    if a.against:
        if a.against == OLD_MODEL and OLD_MODEL in a.daemons.split(","):
            raise SystemExit("--against old-model compares our stack with the model: "
                             "pass --daemons ours and/or minimal")
        for kind in (k for k in a.daemons.split(",") if k):
            for c in (int(x) for x in a.conns.split(",") if x):
                print(compare(a.shared, kind, c, a.duration, a.runs, a.against) + "\n", flush=True)
        return
    conns = [int(x) for x in a.conns.split(",") if x]
    rel = {kind: relay(a.shared, kind, conns, a.duration, a.runs, a.ab)
           for kind in a.daemons.split(",") if kind}
    proxies = ([] if rel and set(rel) == {OLD_MODEL} else ["ours"]) + (
        [OLD_MODEL] if OLD_MODEL in rel else [])  # for idle and fan-in
    idles = ({which: {n: idle(a.shared, a.ws_python, n, which)
                      for n in (int(x) for x in a.idle.split(",") if x)} for which in proxies}
             if a.ws_python and any(x for x in a.idle.split(",")) else {})
    fans = {} if a.skip_fanin else {which: fanin(a.shared, a.runs, which) for which in proxies}
    print(report(rel, idles, fans))
    print("PROXYBENCH " + json.dumps({"relay": rel, "idle": idles, "fanin": fans}, default=str))


if __name__ == "__main__":
    main()
