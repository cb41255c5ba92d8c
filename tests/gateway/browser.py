"""Headless Chromium on a page from another loopback origin: the page's script posts its
result (JSON) to ``/result`` on the origin that served it."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from aiohttp import web

from ..servers import BackgroundApp

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Chromium is missing: apt-get install chromium (.ci/run does)"
    return found


def run_page(page: str, profile: Path, gateway_url: str, timeout: float = 90) -> tuple[dict[str, Any], str]:
    """Serve ``page`` from a loopback origin other than ``gateway_url``'s, open it in
    headless Chromium and return what it posted to ``/result`` (and its URL)."""
    results: list[Any] = []
    arrived = threading.Event()

    async def handler(request: web.Request) -> web.Response:
        if request.method == "POST" and request.path == "/result":
            results.append(json.loads(await request.read()))
            arrived.set()
            return web.Response(text="ok")
        return web.Response(text=page, content_type="text/html")

    server = BackgroundApp(handler)
    page_url = server.start()
    assert page_url.rsplit(":", 1)[1] != gateway_url.rsplit(":", 1)[1]  # another origin
    browser = subprocess.Popen([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", page_url],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert arrived.wait(timeout), f"the page posted no result within {timeout} s"
    finally:
        browser.kill()
        _, stderr = browser.communicate(timeout=30)
        server.stop()
    out = dict(results[0])
    assert "error" not in out, (out, stderr.decode(errors="replace")[-2000:])
    out["pageUrl"] = page_url
    return out, stderr.decode(errors="replace")
