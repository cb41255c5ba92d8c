"""What ``init`` and ``doctor`` check: each check is one line, with its fix when it fails.

- the store directory is writable;
- the proxy answers, and accepts this resource's secret (an ``initialize`` that is
  acknowledged, then closed at once; skipped while this directory's ``share`` is
  connected, which proves it and must not be disturbed);
- the gateway answers, knows the zone, has this client registered, with upload rights
  (an ``initiateFileUpload`` of the empty file: no bytes are sent, though a gateway may
  store the empty file itself);
- (``doctor``) the clocks of the proxy and the gateway agree with ours (their HTTP
  ``Date`` header), and linked files are unchanged since they were linked.
"""

from __future__ import annotations

import email.utils
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from ..config import ResourceConfig
from ..env_proxy import proxy_for
from ..errors import GatewayError, connection_problem
from ..identity import ClientKeys
from ..messages import Initialize, dumps
from .connection import websocket_url
from .refusals import REFUSAL_HINTS
from .uploads.gateway import DaemonGateway
from .uploads.retry import TransientError

EMPTY_SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
MAX_SKEW_SEC = 60.0
TIMEOUT = aiohttp.ClientTimeout(total=15)


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        fix = f" — fix: {self.fix}" if self.fix and not self.ok else ""
        return f"{mark} {self.name}: {self.detail}{fix}"


def check_store(store_dir: Path) -> Check:
    """The store directory exists (or can be made) and takes a file."""
    name = "store"
    try:
        store_dir.mkdir(parents=True, exist_ok=True)
        probe = store_dir / f".kachery-resource-probe-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return Check(name, False, f"{store_dir} is not writable ({exc.strerror or exc})",
                     "set KACHERY_CLOUD_DIR (or --kachery-cloud-dir) to a directory you can "
                     "write, or fix its permissions")
    return Check(name, True, f"{store_dir} is writable")


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, float | None]:
    """GET ``url``: status and the server's clock (``Date``) as a Unix time, if any."""
    async with session.get(url, timeout=TIMEOUT, proxy=proxy_for(url)) as resp:
        date = resp.headers.get("Date")
        when = email.utils.parsedate_to_datetime(date).timestamp() if date else None
        return resp.status, when


async def check_proxy(config: ResourceConfig, session: aiohttp.ClientSession,
                      share_connected: bool) -> list[Check]:
    """The proxy answers; its secret is accepted (unless our ``share`` is connected)."""
    url = config.proxyUrl
    try:
        status, _ = await _get(session, f"{url}/api/info")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return [Check("proxy", False, f"cannot reach {url}: {connection_problem(exc)}",
                      "check proxyUrl (`kachery-resource init --proxy-url`), that the proxy "
                      "runs, and HTTPS_PROXY/NO_PROXY")]
    checks = [Check("proxy", True, f"{url} answers (HTTP {status})")]
    if share_connected:
        checks.append(Check("proxy secret", True, "accepted (share is connected now)"))
        return checks
    if await _resource_online(config, session):  # a check must never take the name over
        checks.append(Check("proxy secret", True, f"not tried: {config.resourceName!r} is "
                            "online at the proxy now (a check would take its name over)"))
        return checks
    try:
        code = await _initialize(config, session)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        checks.append(Check("proxy secret", False, f"the WebSocket failed: "
                            f"{connection_problem(exc)}", "check proxyUrl and HTTPS_PROXY"))
        return checks
    if code is None:
        checks.append(Check("proxy secret", True, f"accepted for {config.resourceName!r}"))
    else:
        checks.append(Check("proxy secret", False, f"the proxy refused the daemon (code {code})",
                            REFUSAL_HINTS.get(code, REFUSAL_HINTS[0])))
    return checks


async def _resource_online(config: ResourceConfig, session: aiohttp.ClientSession) -> bool:
    """Whether a daemon serves the resource at the proxy now: a client's request for a hash
    nobody has is answered (200) only through a connected daemon (404 when none is)."""
    body = {"type": "requestFromClient", "resourceName": config.resourceName, "zone": config.zone,
            "request": {"type": "fileUpload", "uri": "sha1://" + "0" * 40, "timeoutMsec": 1000},
            "timeoutMsec": 5000}
    url = f"{config.proxyUrl}/r/{config.resourceName}"
    try:
        async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=10),
                                proxy=proxy_for(url)) as resp:
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False


async def _initialize(config: ResourceConfig, session: aiohttp.ClientSession) -> int | None:
    """Send ``initialize`` and close: None when acknowledged, else the close code."""
    url = websocket_url(config.proxyUrl)
    async with session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5),
                                  proxy=proxy_for(url)) as ws:
        await ws.send_str(dumps(Initialize(
            type="initialize", resourceName=config.resourceName, zone=config.zone,
            proxySecret=config.proxySecret or "")))
        msg = await ws.receive(timeout=15)
        if msg.type == aiohttp.WSMsgType.TEXT and '"acknowledge"' in str(msg.data):
            return None
        return ws.close_code or 0


GATEWAY_FIX = ("check gatewayUrl (`kachery-resource init --gateway-url`) or KACHERY_GATEWAY_URL, "
               "and that the gateway runs")


async def check_gateway_answers(gateway_url: str, session: aiohttp.ClientSession) -> Check:
    """Only whether the gateway answers (what can be checked without client keys)."""
    try:
        status, _ = await _get(session, f"{gateway_url}/api/info")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return Check("gateway", False, f"cannot reach {gateway_url}: {connection_problem(exc)}",
                     GATEWAY_FIX)
    return Check("gateway", True, f"{gateway_url} answers (HTTP {status})")


async def check_gateway(config: ResourceConfig, keys: ClientKeys, gateway_url: str,
                        session: aiohttp.ClientSession) -> list[Check]:
    """The gateway answers, knows the zone, and lets this client upload."""
    gateway = DaemonGateway(session, gateway_url, keys, config.zone)
    register = (f"the zone's operator runs `kachery-resource gateway clients add "
                f"{keys.client_id} --zone {config.zone} --upload --download`")
    try:
        await gateway.info()
        info = await gateway.client_info()
    except TransientError as exc:
        return [Check("gateway", False, str(exc), GATEWAY_FIX)]
    except GatewayError as exc:
        fix = ("set kacheryZone to one of the gateway's zones (`kachery-resource init --zone`)"
               if exc.status == 404 else "check gatewayUrl and kacheryZone")
        return [Check("gateway", True, f"{gateway_url} answers"),
                Check("zone", False, str(exc), fix)]
    checks = [Check("gateway", True, f"{gateway_url} answers"),
              Check("zone", True, f"{config.zone!r} is known")]
    if info is None:
        checks.append(Check("registration", False,
                            f"client {keys.client_id} is not registered in zone {config.zone!r}",
                            register))
        return checks
    checks.append(Check("registration", True, f"client {keys.client_id} is registered"))
    try:
        await gateway.call({"type": "initiateFileUpload", "size": 0, "hashAlg": "sha1",
                            "hash": EMPTY_SHA1, "zone": config.zone})
    except (GatewayError, TransientError) as exc:
        checks.append(Check("upload rights", False, str(exc), register))
    else:
        checks.append(Check("upload rights", True, "the gateway accepts this client's uploads"))
    return checks


async def check_clock(what: str, url: str, session: aiohttp.ClientSession) -> Check:
    """Our clock against the server's ``Date`` header (signed URLs and requests expire)."""
    name = f"clock vs {what}"
    try:
        _, when = await _get(session, url)
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        return Check(name, False, f"cannot ask {url}: {connection_problem(exc)}",
                     f"make the {what} reachable first")
    if when is None:
        return Check(name, True, f"the {what} sends no Date header (not checked)")
    skew = time.time() - when
    if abs(skew) > MAX_SKEW_SEC:
        return Check(name, False, f"this machine's clock is {skew:+.0f} s off the {what}'s",
                     "synchronise the clock (e.g. enable NTP: `timedatectl set-ntp true`)")
    return Check(name, True, f"within {abs(skew):.0f} s")


def check_links(store_root: Path) -> Check:
    """Every ``linked_files`` record still matches its file's size and mtime."""
    records = store_root / "linked_files" / "sha1"
    total, stale = 0, []
    for folder, _dirs, names in os.walk(records):
        for name in names:
            total += 1
            problem = _stale_link(Path(folder) / name)
            if problem:
                stale.append(problem)
    if stale:
        more = f" (and {len(stale) - 3} more)" if len(stale) > 3 else ""
        return Check("linked files", False,
                     f"{len(stale)} of {total} changed since linked: {'; '.join(stale[:3])}{more}",
                     "run `kachery-resource link` on them again, or `kachery-resource unlink` "
                     "what was moved or deleted")
    return Check("linked files", True, f"{total} unchanged since linked")


def _stale_link(record_path: Path) -> str | None:
    try:
        record = json.loads(record_path.read_text())
        path = Path(str(record["path"]))
    except (OSError, ValueError, KeyError, TypeError):
        return f"unreadable record {record_path.name}"
    try:
        st = path.stat()
    except OSError:
        return f"{path} is gone"
    if st.st_size != record.get("size") or st.st_mtime != record.get("mtime"):
        return f"{path} changed"
    return None
