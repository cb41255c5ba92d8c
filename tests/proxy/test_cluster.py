"""Three proxy processes on one NATS: cross-instance routing, claims, takeover, recovery."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from click.testing import CliRunner

from kachery_resource.cli import cli

from ..servers import ServerProcess, start_cli
from .conftest import SECRET, client_body
from .v1daemon import V1Daemon


async def _post(session: aiohttp.ClientSession, url: str, name: str,
                **kw: object) -> tuple[int, dict[str, object]]:
    async with session.post(f"{url}/r/{name}", json=client_body(name, "e" * 40, **kw)) as r:
        return r.status, await r.json()


async def test_three_instances_share_names_and_recover_from_a_kill(
        nats_url: str, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    result = CliRunner().invoke(cli, ["proxy", "tokens", "add", "tok", "--tokens-file", str(tokens)])
    token = result.stdout.strip()
    args = ["proxy", "--host", "127.0.0.1", "--port", "0", "--nats-url", nats_url,
            "--tokens-file", str(tokens), "--access-log", "off"]
    env = {"PROXY_SECRET": SECRET}
    procs: list[ServerProcess] = list(await asyncio.gather(
        *(asyncio.to_thread(start_cli, [*args, "--instance-id", f"i{k}"], env) for k in range(3))))
    urls = [p.url for p in procs]
    daemons: list[V1Daemon] = []

    async def daemon(url: str, name: str, secret: str = SECRET, size: int = 0) -> V1Daemon:
        d = V1Daemon(url, name, secret, statuses={"e" * 40: {"status": "completed", "size": size}})
        daemons.append(d)
        return d

    try:
        on = [await daemon(urls[k], f"n{k}", size=k) for k in range(3)]
        for d in on:
            assert await d.connect()
        async with aiohttp.ClientSession() as session:
            # every instance reaches the daemons held by every other
            for url in urls:
                for k in range(3):
                    status, body = await _post(session, url, f"n{k}")
                    assert status == 200, body
                    assert body["response"] == {"type": "fileUpload",  # type: ignore[comparison-overlap]
                                                "status": {"status": "completed", "size": k}}
            assert (await _post(session, urls[0], "nobody"))[0] == 404
            status, body = await _post(session, urls[1], "n0", zone="elsewhere")
            assert status == 500 and body["code"] == "zone-mismatch"
            # the instance holding the socket decides which request types its daemon takes
            ranges = {**client_body("n0", "e" * 40),
                      "request": {"type": "fileRanges", "uri": "sha1://" + "e" * 40,
                                  "ranges": [[0, 1]], "timeoutMsec": 100}}
            async with session.post(f"{urls[1]}/r/n0", json=ranges) as r:
                body = await r.json()
                assert r.status == 400 and body["code"] == "unsupported-request", body
            # a name held on one instance cannot be claimed on another with the shared secret
            thief = await daemon(urls[1], "n0")
            assert not await thief.connect() and thief.close_code == 4002
            # ... but its own token takes it over across instances
            first = await daemon(urls[1], "tok", token, size=7)
            assert await first.connect()
            second = await daemon(urls[2], "tok", token, size=8)
            assert await second.connect()
            await first.wait_closed()
            assert first.close_code == 4009
            status, body = await _post(session, urls[0], "tok")
            assert status == 200 and body["response"]["status"]["size"] == 8, body  # type: ignore[index]
            assert all(d.violations == [] for d in daemons)

            # kill instance 0: its daemon reconnects to another instance; requests succeed
            procs[0].kill()
            await on[0].wait_closed(timeout=10)
            again = await daemon(urls[1], "n0", size=0)
            for _ in range(50):
                if await again.connect():
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("n0 could not reconnect after its instance died")
            for url in urls[1:]:
                for k in range(3):
                    status, body = await _post(session, url, f"n{k}")
                    assert status == 200, (url, k, body)
            async with session.get(f"{urls[1]}/healthz") as r:
                assert (await r.json())["nats"] == "connected"
    finally:
        for d in daemons:
            await d.close()
        for p in procs:
            p.stop()
