"""The released kachery-cloud 0.4.10 client, in a subprocess, through our proxy."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from .conftest import SHA_A, SHA_B, Proxy

SCRIPT = """
import json, sys
from kachery_cloud.request_file import request_file
out = []
for uri in sys.argv[1:]:
    try:
        r = request_file(uri, timeout_sec=2, ignore_local=True, ignore_bucket=True)
        out.append({"found": r.found, "completed": r.completed, "queued": r.queued,
                    "size": r.size, "errored": r.errored, "error_message": r.error_message})
    except Exception as exc:
        out.append({"exception": str(exc)})
print("RESULT " + json.dumps(out))
"""


async def _request_file(env: dict[str, str], *uris: str) -> list[dict[str, object]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCRIPT, *uris, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    lines = [x for x in text.splitlines() if x.startswith("RESULT ")]
    assert lines, text
    result: list[dict[str, object]] = json.loads(lines[0][7:])
    return result


async def test_kachery_cloud_request_file_through_the_proxy(proxy: Proxy, kc_dir: Path) -> None:
    done = {"status": "completed", "size": 1234, "bytesUploaded": 1234,
            "timestampRequested": 1, "timestampStarted": 2, "timestampCompleted": 3}
    d = await proxy.daemon("lab-resource", statuses={SHA_A: done,
                                                     SHA_B: {"status": "queued", "size": 9}})
    env = {**os.environ, "KACHERY_RESOURCE_URL": f"{proxy.url}/r/lab-resource",
           "KACHERY_CLOUD_DIR": str(kc_dir), "KACHERY_ZONE": "default"}
    results = await _request_file(env, f"sha1://{SHA_A}", f"sha1://{SHA_B}", "sha1://" + "c" * 40)
    assert results[0] == {"found": True, "completed": True, "queued": False, "size": 1234,
                          "errored": False, "error_message": ""}
    assert results[1]["queued"] is True and results[1]["found"] is True
    assert results[2]["found"] is False
    assert d.violations == []
    # the exact v1 message the old daemon validates: inner 2000 ms, outer 7000 ms from the client
    assert d.received[0]["request"]["timeoutMsec"] == 2000
    # an offline resource is a clear error in the client
    env["KACHERY_RESOURCE_URL"] = f"{proxy.url}/r/nobody"
    offline = await _request_file(env, f"sha1://{SHA_A}")
    assert "404" in str(offline[0]["exception"]) and "resource not found" in str(offline[0])
