"""A real browser (headless Chromium) on a page from another loopback origin: it uploads
through the kachery 2.x API (work token and sha1 by SubtleCrypto), finds files, downloads
them, reads a byte range and checks sha1s, all through CORS. Never skipped: CI installs
Chromium (.ci/run)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..servers import cli_server
from .browser import run_page
from .conftest import run_cli
from .helpers import store_v2

PAGE = """<!doctype html><html><body><script>
const GW = %(gateway)s, KEY = %(key)s, STORED = %(stored)s, ZONE = "private";
const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
const sha1 = async (bytes) => hex(await crypto.subtle.digest("SHA-1", bytes));
async function api(path, body, key) {
  const headers = {"Content-Type": "application/json"};
  if (key) headers["Authorization"] = "Bearer " + key;
  const r = await fetch(GW + "/api/" + path, {method: "POST", headers, body: JSON.stringify(body)});
  return {status: r.status, body: await r.json()};
}
async function workToken(hash) {
  for (;;) {
    const token = hex(crypto.getRandomValues(new Uint8Array(8)));
    const h = await sha1(new TextEncoder().encode(hash + token));
    if ((parseInt(h.slice(0, 4), 16) >> 3) === 0) return token;
  }
}
const find = (hash) => ({type: "findFileRequest", hashAlg: "sha1", hash, zoneName: ZONE});
async function download(hash) {
  const found = await api("findFile", find(hash), KEY);
  const whole = await fetch(found.body.url);
  const bytes = await whole.arrayBuffer();
  const part = await fetch(found.body.url, {headers: {Range: "bytes=1000-1999"}});
  return {found: found.body.found, size: found.body.size, sha1: await sha1(bytes),
          rangeStatus: part.status, contentRange: part.headers.get("Content-Range"),
          acceptRanges: whole.headers.get("Accept-Ranges"),
          contentLength: whole.headers.get("Content-Length"),
          rangeSha1: await sha1(await part.arrayBuffer())};
}
async function main() {
  const out = {secure: window.isSecureContext, origin: location.origin};
  out.anonymous = await api("findFile", find(STORED), null);
  out.stored = await download(STORED);
  const data = new Uint8Array(200000);
  for (let i = 0; i < data.length; i += 50000) crypto.getRandomValues(data.subarray(i, i + 50000));
  const hash = await sha1(data);
  const init = await api("initiateFileUpload", {type: "initiateFileUploadRequest", size: data.length,
    hashAlg: "sha1", hash, zoneName: ZONE, workToken: await workToken(hash)}, KEY);
  const put = await fetch(init.body.signedUploadUrl, {method: "PUT", body: data});
  const fin = await api("finalizeFileUpload", {type: "finalizeFileUploadRequest",
    objectKey: init.body.objectKey, hashAlg: "sha1", hash, zoneName: ZONE, size: data.length}, KEY);
  out.upload = {hash, initiate: init.status, put: put.status, finalize: fin.body,
                ownRange: await sha1(data.subarray(1000, 2000))};
  out.uploaded = await download(hash);
  return out;
}
main().catch((e) => ({error: String(e)})).then((out) =>
  fetch("/result", {method: "POST", body: JSON.stringify(out)}));
</script></body></html>
"""


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    config = tmp_path / "zones.yaml"
    config.write_text(f"storage: {tmp_path / 'storage'}\nzones:\n  private:\n"
                      "    prefix: private\n    allowPublicDownload: false\n")
    with cli_server(["gateway", "--port", "0", "--config", str(config)]) as server:
        yield server.url, config


def test_page_from_another_origin(gateway: tuple[str, Path], tmp_path: Path) -> None:
    url, config = gateway
    done = run_cli("users", "add", "viewer", "--config", str(config), "--zone", "private", "--upload")
    assert done.exit_code == 0, done.output
    key = done.stdout.strip().splitlines()[-1]
    data = os.urandom(150_000)
    stored = store_v2(url, key, data, "private")
    page = PAGE % {"gateway": json.dumps(url), "key": json.dumps(key), "stored": json.dumps(stored)}
    out, _ = run_page(page, tmp_path / "profile", url)
    page_url = out["pageUrl"]
    assert out["secure"] is True and out["origin"] == page_url
    assert out["anonymous"]["status"] == 401 and "KACHERY_API_KEY" in out["anonymous"]["body"]["error"]
    expected = {"found": True, "size": len(data), "sha1": stored, "rangeStatus": 206,
                "contentRange": f"bytes 1000-1999/{len(data)}", "acceptRanges": "bytes",
                "contentLength": str(len(data)), "rangeSha1": hashlib.sha1(data[1000:2000]).hexdigest()}
    assert out["stored"] == expected
    upload = out["upload"]
    assert (upload["initiate"], upload["put"], upload["finalize"]) == (
        200, 200, {"type": "finalizeFileUploadResponse", "success": True})
    uploaded = out["uploaded"]
    assert uploaded["found"] is True and uploaded["sha1"] == upload["hash"]
    assert uploaded["rangeSha1"] == upload["ownRange"] and uploaded["rangeStatus"] == 206
    h = upload["hash"]
    on_disk = tmp_path / "storage" / "private" / "sha1" / h[:2] / h[2:4] / h[4:6] / h
    assert hashlib.sha1(on_disk.read_bytes()).hexdigest() == h
