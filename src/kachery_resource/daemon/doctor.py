"""``kachery-resource doctor``: every check ``init`` makes, plus clock skew against the proxy
and the gateway and linked files that changed; one line per check with its fix."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from ..config import ResourceConfig
from ..identity import ClientKeys, load_client_keys
from .checks import (
    Check,
    check_clock,
    check_gateway,
    check_gateway_answers,
    check_links,
    check_proxy,
    check_store,
)
from .state import live_state


async def run_checks(config: ResourceConfig, keys: ClientKeys | None, state_dir: Path, *,
                     doctor: bool) -> list[Check]:
    """The network checks (``init``), and with ``doctor`` the clocks. Without keys the
    gateway is only asked whether it answers."""
    gateway_url = config.gateway_url()
    connected = bool(live_state(state_dir).get("connected"))
    async with aiohttp.ClientSession() as session:
        checks = await check_proxy(config, session, connected)
        if keys is not None:
            checks += await check_gateway(config, keys, gateway_url, session)
        else:
            checks.append(await check_gateway_answers(gateway_url, session))
        if doctor:
            checks.append(await check_clock("proxy", f"{config.proxyUrl}/api/info", session))
            checks.append(await check_clock("gateway", f"{gateway_url}/api/info", session))
    return checks


async def diagnose(config: ResourceConfig, state_dir: Path) -> list[Check]:
    """Everything ``doctor`` reports, in order."""
    store_dir = config.store_dir()
    checks = [check_store(store_dir)]
    keys = load_client_keys(store_dir)
    if keys is None:
        checks.append(Check("client keys", False, f"none in {store_dir}",
                            "run `kachery-resource init` (or set KACHERY_CLOUD_CLIENT_ID and "
                            "KACHERY_CLOUD_PRIVATE_KEY)"))
    else:
        checks.append(Check("client keys", True, f"client id {keys.client_id}"))
    checks += await run_checks(config, keys, state_dir, doctor=True)
    checks.append(check_links(store_dir))
    return checks
