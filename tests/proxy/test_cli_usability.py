"""The `proxy` command's behaviour for its user: NATS down at start, clear errors, help."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner, Result

from kachery_resource.cli import cli
from kachery_resource.errors import ConfigError

from ..servers import BIN, free_port, start_cli
from .conftest import SECRET
from .v1daemon import V1Daemon


@contextmanager
def _nats_on(port: int, workdir: Path) -> Iterator[None]:
    """``nats-server`` on a chosen loopback port (the shared fixture picks its own)."""
    with open(workdir / "nats.log", "w") as log:
        proc = subprocess.Popen([str(BIN / "nats-server"), "-a", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            yield
        finally:
            proc.terminate()
            proc.wait(10)


async def _health(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(f"{url}/healthz") as r:
        return r.status, (await r.json())["nats"]


async def _wait_health(session: aiohttp.ClientSession, url: str, status: int,
                       timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while (await _health(session, url))[0] != status:
        assert time.monotonic() < deadline, f"/healthz did not become {status}"
        await asyncio.sleep(0.1)


async def test_proxy_serves_while_nats_is_down_and_joins_when_it_comes_up(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there yet
    args = ["proxy", "--host", "127.0.0.1", "--port", "0", "--access-log", "off",
            "--nats-url", f"nats://127.0.0.1:{port}"]
    proc = await asyncio.to_thread(start_cli, args, {"PROXY_SECRET": SECRET}, None, 10)
    assert proc.output[0] == proc.url  # the URL is still the first line
    try:
        async with aiohttp.ClientSession() as session:
            assert await _health(session, proc.url) == (503, "disconnected")
            down = f"nats: cannot reach nats://127.0.0.1:{port} (connection refused); retrying"
            deadline = time.monotonic() + 15
            while down not in proc.output:
                assert time.monotonic() < deadline, proc.text()
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.5)  # more attempts (backoff 0.5 s, 1 s, …): still one line
            assert (await _health(session, proc.url))[0] == 503
            assert proc.output.count(down) == 1, proc.text()
            with _nats_on(port, tmp_path):
                await _wait_health(session, proc.url, 200)
                assert (await _health(session, proc.url))[1] == "connected"
                daemon = V1Daemon(proc.url, "lab1", SECRET)  # claims go over NATS again
                assert await daemon.connect()
                await daemon.close()
            await _wait_health(session, proc.url, 503)  # NATS stopped
        assert proc.output.count(f"nats: connected to nats://127.0.0.1:{port}") == 1, proc.text()
        lost = [line for line in proc.output if line.startswith("nats: lost the connection to")]
        assert len(lost) == 1 and lost[0].endswith("; reconnecting"), proc.text()
        assert "Traceback" not in proc.text() and "encountered error" not in proc.text()
    finally:
        proc.stop()


def _invoke(args: list[str], env: dict[str, str | None] | None = None) -> Result:
    base: dict[str, str | None] = {"PROXY_SECRET": SECRET, "PORT": None,
                                   "KACHERY_PROXY_NATS_URL": None}
    return CliRunner().invoke(cli, args, env={**base, **(env or {})}, terminal_width=1000)


def _config_error(result: Result) -> str:
    assert isinstance(result.exception, ConfigError), (result.exception, result.output)
    return str(result.exception)


def test_tokens_add_refuses_a_name_the_daemon_would_reject(tmp_path: Path) -> None:
    tokens = tmp_path / "t.json"
    done = subprocess.run([str(BIN / "kachery-resource"), "proxy", "tokens", "add", "bad name!",
                           "--tokens-file", str(tokens)], capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: invalid resource name 'bad name!': use letters, digits")
    assert not tokens.exists()
    zone = _invoke(["proxy", "tokens", "add", "lab1", "--zone", "a zone", "--tokens-file", str(tokens)])
    assert "invalid zone 'a zone'" in _config_error(zone) and not tokens.exists()


def test_unusable_access_log_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "access.jsonl"
    result = _invoke(["proxy", "--port", "0", "--access-log", str(missing)])
    message = _config_error(result)
    assert message.startswith(f"cannot open the access log {missing}: the directory "
                              f"{missing.parent} does not exist")
    assert "'off'" in message
    assert "a directory" in _config_error(_invoke(["proxy", "--port", "0",
                                                    "--access-log", str(tmp_path)]))


@pytest.mark.parametrize(("args", "env", "config", "expected"), [
    (["--max-wait-sec", "-5"], {}, "",
     "invalid --max-wait-sec -5: must be a number greater than 0 and at most 600"),
    (["--heartbeat-sec", "0"], {}, "", "invalid --heartbeat-sec 0: must be a number greater than 0"),
    ([], {"PORT": "abc"}, "", "invalid $PORT abc: must be a whole number from 0 to 65535"),
    (["--port", "70000"], {}, "", "invalid --port 70000: must be a whole number from 0 to 65535"),
    ([], {}, "maxWaitSec: -5\n",
     "invalid maxWaitSec -5 (in proxy config {config}): must be a number greater than 0 and at most 600"),
    ([], {}, "maxWaitSecs: 5\n",
     "unknown key maxWaitSecs (in proxy config {config}); known keys there: accessLog, "),
    (["--port", "70000"], {}, "max_body_bytes: 1k\nrequireTokens: not sure\n",
     "3 problems in the proxy settings:\n"
     "  invalid --port 70000: must be a whole number from 0 to 65535\n"
     "  invalid requireTokens 'not sure' (in proxy config {config}): must be a valid boolean, "
     "unable to interpret input\n"
     "  invalid max_body_bytes 1k (in proxy config {config}): must be a whole number at least 1024"),
])
def test_invalid_settings_name_what_the_user_wrote(
        tmp_path: Path, args: list[str], env: dict[str, str | None], config: str,
        expected: str) -> None:
    if config:
        path = tmp_path / "proxy.yaml"
        path.write_text(config)
        args = [*args, "--config", str(path)]
        expected = expected.format(config=path)
    message = _config_error(_invoke(["proxy", *args], env))
    assert message.startswith(expected), message


def test_empty_tokens_list_says_so(tmp_path: Path) -> None:
    tokens = tmp_path / "t.json"
    result = _invoke(["proxy", "tokens", "list", "--tokens-file", str(tokens)])
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr == f"no tokens in {tokens}\n"


def test_help_shows_every_default_the_same_way() -> None:
    text = _invoke(["proxy", "--help"]).output
    assert "[default: $PORT or 3030]" in text and "[$PORT" not in text
    options = text.split("Options:")[1].split("Commands:")[0].split("\n  -")[1:]
    valued = [o for o in options if o.split()[0] not in ("-config", "-require-tokens", "h,")]
    assert len(valued) == 12 and all("[default: " in o for o in valued), valued
    assert "[default: 25]" in text and "[default: 127.0.0.1]" in text
