"""/registerClient serves browsers a page with the operator's command; kachery-cloud-init succeeds."""

from __future__ import annotations

import html
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from kachery_resource.gateway.app import build_app
from kachery_resource.gateway.settings import load_settings
from kachery_resource.identity import ClientKeys

from ..servers import cli_server
from .conftest import run_cli

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def _command_in(page: str) -> list[str]:
    found = re.search(r"<pre>(kachery-resource gateway clients add .*?)</pre>", page)
    assert found, page
    return shlex.split(html.unescape(found.group(1)))


async def test_a_browser_gets_a_page_programs_get_json(
    tmp_path: Path, client_keys: ClientKeys, aiohttp_client: Any
) -> None:
    client = await aiohttp_client(build_app(load_settings(storage=str(tmp_path / "storage"))))
    url = f"/registerClient/{client_keys.client_id}"
    params = {"signature": client_keys.sign({"type": "addClient"}), "zone": "default",
              "label": "<script>alert(1)</script>"}
    resp = await client.get(url, params=params, headers={"Accept": BROWSER})
    page = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    assert "waiting for approval" in page and "<script>" not in page
    assert "&lt;script&gt;" in page
    assert _command_in(page) == ["kachery-resource", "gateway", "clients", "add",
                                 client_keys.client_id, "--zone", "default", "--upload"]
    for accept in ("application/json", "*/*"):
        resp = await client.get(url, params=params, headers={"Accept": accept})
        assert resp.content_type == "application/json"
        assert (await resp.json())["status"] == "pending"
    resp = await client.get(url, params={**params, "signature": "00" * 64}, headers={"Accept": BROWSER})
    assert resp.status == 401 and resp.content_type == "text/html"
    assert "kachery-cloud-init printed" in await resp.text()
    resp = await client.get(f"/client/{client_keys.client_id}", headers={"Accept": BROWSER})
    assert resp.status == 200 and "waiting for approval" in await resp.text()
    resp = await client.get(f"/client/{'0' * 64}", headers={"Accept": BROWSER})
    assert resp.status == 404 and resp.content_type == "text/html"


def test_kachery_cloud_init_succeeds_once_the_operator_approves(tmp_path: Path) -> None:
    storage = ["--storage", str(tmp_path / "storage")]
    with cli_server(["gateway", "--port", "0", *storage]) as gw:
        env = {**os.environ, "KACHERY_GATEWAY_URL": gw.url, "KACHERY_CLOUD_DIR": str(tmp_path / "kc"),
               "PYTHONUNBUFFERED": "1"}
        for name in ("KACHERY_CLOUD_CLIENT_ID", "KACHERY_CLOUD_PRIVATE_KEY", "KACHERY_ZONE"):
            env.pop(name, None)
        init = Path(sys.executable).parent / "kachery-cloud-init"
        proc = subprocess.Popen([str(init)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            url = ""
            while "/registerClient/" not in url:
                url = proc.stdout.readline()
                assert url, "kachery-cloud-init ended before printing its URL"
            page = requests.get(url.strip(), headers={"Accept": BROWSER}, timeout=10).text
            command = _command_in(page)
            added = run_cli(*command[2:], *storage)  # what the operator runs
            assert added.exit_code == 0, added.output
            time.sleep(1.2)  # the running gateway's registry cache (1 s)
            out, _ = proc.communicate("\n", timeout=60)
        finally:
            proc.kill()
        assert proc.returncode == 0, out
        assert "Client initialized successfully." in out
        approved = requests.get(url.strip(), headers={"Accept": BROWSER}, timeout=10).text
        assert "This client is approved" in approved
