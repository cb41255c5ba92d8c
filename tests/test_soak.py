"""A short run of ``scripts/soak``: the distributed deployment (3 proxies on NATS, 2
gateways on SeaweedFS, daemons, our client, kachery-cloud 0.4.10 with and without a
resource URL, kachery 2.0.3 on the gateway's on-demand path) under load while
every kind of fault is injected once; every check must pass and the report must show
what it checked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_short_soak_passes_every_check(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "soak"), "--minutes", "1.0", "--daemons", "2", "--files", "12",
         "--clients", "4", "--max-kib", "256", "--big-kib", "16384", "--seed", "7", "--json",
         "--workdir", str(tmp_path / "soak")],
        capture_output=True, text=True, timeout=840)
    assert done.stdout, done.stderr[-3000:]
    report = json.loads(done.stdout)
    failed = [c for c in report["checks"] if not c["ok"]]
    assert done.returncode == 0 and report["passed"] and not failed, (failed, done.stderr[-3000:])
    assert len(report["checks"]) == 10
    assert {f["fault"] for f in report["faults"]} == {
        "proxy-kill", "gateway-kill", "seaweedfs-kill", "nats-kill", "daemon-sigstop",
        "daemon-blackhole", "daemon-kill-mid-upload"}
    assert all(f["recovery_s"] is not None for f in report["faults"])
    # the daemon really was killed while it uploaded
    assert not [f for f in report["faults"] if "no upload seen" in f["target"]], report["faults"]
    kinds = {k.split("/")[0] for k in report["outcomes"]}
    assert kinds == {"ours", "kachery-cloud-0.4.10", "kachery-cloud-0.4.10-on-demand",
                     "kachery-2.0.3-on-demand"}
    for kind in kinds:  # each generation, through the resource URL and on demand
        assert report["outcomes"][f"{kind}/exists"].get("ok", 0) > 0, report["outcomes"]
    assert "steady" in report["latency"]
