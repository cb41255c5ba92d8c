#!/usr/bin/env python3
"""A minimal resource daemon for benchmarks: answers every request ``not-found`` at once.

It isolates the proxy's cost: no store lookup, no validation beyond what it needs.
Usage: proxy_notfound_daemon.py --url http://127.0.0.1:3030 --secret S [--name bench1]
Prints ``READY`` once the proxy acknowledged it.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import aiohttp

REPLY_HEAD = '{"type":"responseToClient","requestId":"'
REPLY_TAIL = '","response":{"type":"fileUpload","status":{"status":"not-found"}}}'


async def run(url: str, secret: str, name: str, zone: str) -> None:
    ws_url = "ws" + url[4:] if url.startswith("http") else url
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        await ws.send_str(json.dumps({"type": "initialize", "resourceName": name,
                                      "zone": zone, "proxySecret": secret}))
        ack = await ws.receive_json(timeout=10)
        if ack.get("type") != "acknowledge":
            raise SystemExit(f"not acknowledged: {ack}")
        print("READY", flush=True)
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if data.get("type") == "requestFromClient":
                await ws.send_str(REPLY_HEAD + data["requestId"] + REPLY_TAIL)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--name", default="bench1")
    p.add_argument("--zone", default="default")
    a = p.parse_args()
    asyncio.run(run(a.url, a.secret, a.name, a.zone))


if __name__ == "__main__":
    main()
