"""What several benchmarks share: test files, signed gateway calls, peak RSS, the code of
an earlier commit."""

from __future__ import annotations

import hashlib
import secrets
import subprocess
from pathlib import Path
from typing import Any

import requests

from kachery_resource.identity import ClientKeys, signed_envelope

MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident memory (VmHWM) of process ``pid``, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_file(path: Path, size: int) -> str:
    """Write ``size`` bytes (a random block of up to 64 MiB repeated, each copy stamped with
    its index, so no two blocks are equal) and return their sha1."""
    digest = hashlib.sha1()
    block = secrets.token_bytes(min(64 * MIB, max(size, 8)))
    with open(path, "wb") as f:
        left, n = size, 0
        while left > 0:
            chunk = (n.to_bytes(8, "big") + block[8:])[: min(len(block), left)]
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
            n += 1
    return digest.hexdigest()


def gateway_call(url: str, keys: ClientKeys, payload: dict[str, Any]) -> dict[str, Any]:
    """One signed ``POST {url}/api/gateway`` (zone ``default`` unless the payload names one)."""
    resp = requests.post(f"{url}/api/gateway",
                         json=signed_envelope(keys, {"zone": "default", **payload}), timeout=1800)
    if resp.status_code != 200:
        raise SystemExit(f"{payload['type']} failed: {resp.status_code} {resp.text}")
    data: dict[str, Any] = resp.json()
    return data


def checkout(rev: str, tmp: str) -> Path:
    """The ``src`` tree of commit ``rev``, extracted under ``tmp`` (put it first on
    ``PYTHONPATH`` to run that commit's code)."""
    tree = Path(tmp) / "baseline"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree / "src"
