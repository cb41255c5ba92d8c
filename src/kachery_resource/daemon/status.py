"""``kachery-resource status``: what this directory's ``share`` is doing, from the state it
publishes (:mod:`.state`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .state import live_state


def status_of(state_dir: Path) -> dict[str, Any]:
    """The state of this directory's ``share``: ``running`` false when none runs."""
    data = live_state(state_dir)
    if not data:
        return {"running": False, "connected": False}
    return {"running": True, **data}


def _when(ts: object) -> str:
    if not isinstance(ts, (int, float)):
        return "?"
    ago = time.time() - ts
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    return f"{stamp} ({_duration(ago)} ago)"


def _duration(sec: float) -> str:
    sec = max(0, int(sec))
    if sec < 120:
        return f"{sec} s"
    if sec < 7200:
        return f"{sec // 60} min"
    return f"{sec // 3600} h {sec % 3600 // 60} min"


def gib(n: object) -> str:
    """Bytes in MiB/GiB, the unit family every progress display uses."""
    value = float(n) if isinstance(n, (int, float)) else 0.0
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.1f} MiB"


def render(status: dict[str, Any]) -> list[str]:
    """The human form of :func:`status_of`."""
    if not status["running"]:
        return ["share: not running in this directory (start it with `kachery-resource share`, "
                "or `kachery-resource service install`)"]
    lines = [f"share: running (pid {status.get('pid')}) since {_when(status.get('startedAt'))}"]
    proxy = f"{status.get('proxyUrl')} as {status.get('resourceName')!r}"
    if status.get("connected"):
        lines.append(f"proxy: connected to {proxy} since {_when(status.get('connectedSince'))}")
    else:
        lines.append(f"proxy: NOT connected to {proxy}: {status.get('problem')}")
    lines.append(f"gateway: {status.get('gatewayUrl')}  store: {status.get('storeDir')}")
    lines.append(f"files served: {status.get('filesServed', 0)} "
                 f"({gib(status.get('bytesUploaded', 0))} uploaded); uploads in flight: "
                 f"{status.get('uploadsInFlight', 0)}")
    failures = status.get("recentFailures") or []
    lines.append(f"recent failures: {len(failures)}")
    for item in failures[-5:]:
        lines.append(f"  {_when(item.get('at'))} {item.get('uri')}: {item.get('error')}")
    return lines
