"""Several proxy instances sharing resource names over NATS request/reply.

The instance holding a daemon's socket subscribes to ``<prefix>.r.<hex of the name>``.
Messages on that subject (JSON, field ``op``):

- ``req``: relay a client request; the reply is ``{"status": 200, "body": {...}}`` or a
  refusal ``{"status": 4xx/5xx, "code", "message", "retryAfter"}``. No subscriber means
  NATS answers *no responders* at once: the resource is offline (404).
- ``cancel``: the asking instance's client went away; stop waiting for ``ref``.
- ``claim``: another instance wants the name. The holder answers ``{"held": true}``, or,
  when the claimant proved the name's token (``takeover``), closes its socket and
  answers ``{"released": true}``.
- ``announce``: published by a new holder right after subscribing. If two instances
  claimed the same free name at the same moment, the older claim (earlier ``since``,
  then smaller instance id) keeps it and the other closes its socket (code 4002).

The connection to NATS is made in the background: the proxy serves even while NATS is
unreachable (``/healthz`` answers 503, names held elsewhere are unavailable) and retries
with a backoff, logging one line per change of state, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import sys
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError, StaleConnectionError
from nats.errors import TimeoutError as NatsTimeout

from ..errors import ConfigError, connection_problem
from .connection import DaemonConnection
from .errors import ProxyRefusal, offline, timed_out
from .registry import CLOSE_REPLACED, LocalRegistry, name_taken

CLOSE_HELD_ELSEWHERE = 4002
RETRY_MIN_SEC = 0.5  # first wait between connection attempts; doubles up to RETRY_MAX_SEC
RETRY_MAX_SEC = 5.0
CONNECT_TIMEOUT_SEC = 2  # one connection attempt (TCP + NATS handshake)
# errors that mean the connection is going (StaleConnectionError includes "unexpected EOF")
_CONNECTION_LOST = (OSError, asyncio.TimeoutError, StaleConnectionError)


def _unavailable(what: str) -> ProxyRefusal:
    return ProxyRefusal(503, "cluster-unavailable",
                        f"the proxy cluster bus (NATS) is not available: {what}; retry shortly")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def shown_url(url: str) -> str:
    """``url`` without credentials (``nats://user:pass@host`` -> ``nats://host``), for logs."""
    return re.sub(r"//[^/@]*@", "//", url)


def reason(exc: BaseException) -> str:
    """A short description of a connection failure, for one log line."""
    if isinstance(exc, OSError | TimeoutError):  # nats' TimeoutError is one too
        return connection_problem(exc)
    return str(exc).removeprefix("nats: ").strip() or type(exc).__name__


class NatsRegistry(LocalRegistry):
    """A registry shared by every proxy instance connected to one NATS server."""

    def __init__(self, url: str, prefix: str, instance_id: str, claim_timeout: float = 2.0):
        super().__init__()
        self.url = url
        self.prefix = prefix
        self.instance_id = instance_id
        self.claim_timeout = claim_timeout
        self.nc = Client()
        self.subs: dict[str, Subscription] = {}
        self._claiming: set[str] = set()
        self._serving: dict[str, asyncio.Task[None]] = {}
        self._connecting: asyncio.Task[None] | None = None
        self._attempted = asyncio.Event()  # the first connection attempt has an outcome
        self._started = False  # start() returned: the server prints its URL, then our logs
        self._down_said = False  # "cannot reach" / "lost" was logged; "connected" is next
        self._was_up = False  # connected at least once: a failure is a lost connection
        self._stopping = False
        self._lost_because: str | None = None  # the error that came just before a disconnect

    def subject(self, name: str) -> str:
        return f"{self.prefix}.r.{name.encode('utf-8').hex()}"

    async def start(self) -> None:
        """Start connecting in the background; return once the first attempt succeeded or
        failed (so a reachable NATS is connected before the proxy listens)."""
        self._connecting = asyncio.create_task(self._connect())
        attempted = asyncio.create_task(self._attempted.wait())
        await asyncio.wait({self._connecting, attempted}, return_when=asyncio.FIRST_COMPLETED)
        attempted.cancel()
        exc = self._connecting.exception() if self._connecting.done() else None
        if exc is not None:
            raise ConfigError(f"invalid NATS URL {shown_url(self.url)!r} ({reason(exc)}): "
                              "expected nats://HOST:PORT") from None
        self._started = True

    async def _connect(self) -> None:
        # nats-py retries forever (max_reconnect_attempts=-1) both the first connection and
        # reconnections, waiting reconnect_time_wait (read before every attempt) between
        # tries; _on_error grows that wait (the backoff) and _on_up resets it.
        await self.nc.connect(
            self.url, name=f"kachery-proxy-{self.instance_id}", allow_reconnect=True,
            max_reconnect_attempts=-1, reconnect_time_wait=RETRY_MIN_SEC,  # type: ignore[arg-type]
            connect_timeout=CONNECT_TIMEOUT_SEC, error_cb=self._on_error,
            disconnected_cb=self._on_disconnected, reconnected_cb=self._on_up,
            closed_cb=self._on_closed)
        await self._on_up()

    async def _on_error(self, exc: Exception) -> None:
        if self.nc.is_connected:
            if isinstance(exc, _CONNECTION_LOST):  # disconnected_cb may follow: it says why
                self._lost_because = reason(exc)
            else:  # trouble on a working connection: one line, no traceback
                _say(f"nats: {reason(exc)}")
            return
        self._attempted.set()
        wait = float(self.nc.options.get("reconnect_time_wait", RETRY_MIN_SEC))
        self.nc.options["reconnect_time_wait"] = min(RETRY_MAX_SEC, wait * 2)
        self._down(reason(exc))

    async def _on_disconnected(self) -> None:
        why, self._lost_because = self._lost_because, None
        self._down(why)

    def _down(self, why: str | None) -> None:
        """Log the first failure after being up (or since the start), once."""
        if not self._started or self._down_said or self._stopping:
            return
        self._down_said = True
        because = f" ({why})" if why else ""
        if why and "authorization" in why.lower():
            _say(f"nats: {shown_url(self.url)} refused this proxy{because}; check the user and "
                 "password in the NATS URL; retrying")
        elif self._was_up:
            _say(f"nats: lost the connection to {shown_url(self.url)}{because}; reconnecting")
        else:
            _say(f"nats: cannot reach {shown_url(self.url)}{because}; retrying")

    async def _on_up(self) -> None:
        self._attempted.set()
        self._was_up = True
        self.nc.options["reconnect_time_wait"] = RETRY_MIN_SEC
        if self._down_said:
            self._down_said = False
            _say(f"nats: connected to {shown_url(self.url)}")

    async def _on_closed(self) -> None:
        if not self._stopping:
            why = reason(self.nc.last_error) if self.nc.last_error else "closed by the client"
            _say(f"nats: the connection to {shown_url(self.url)} was closed ({why}); "
                      "restart this proxy instance to rejoin the cluster")

    async def stop(self) -> None:
        self._stopping = True
        for task in list(self._serving.values()):
            task.cancel()
        connecting = self._connecting
        if connecting is not None and not connecting.done():
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connecting
        set_up = connecting is not None and (connecting.cancelled() or connecting.exception() is None)
        if set_up and not self.nc.is_closed:  # (a client whose URL was refused has nothing to close)
            await self.nc.close()

    @property
    def healthy(self) -> bool:
        return self.nc.is_connected

    def serving_count(self) -> int:
        return len(self._serving)

    def _bus(self) -> Client:
        if not self.nc.is_connected:
            raise _unavailable("not connected")
        return self.nc

    # -- claims -------------------------------------------------------------------------
    async def claim(self, conn: DaemonConnection) -> None:
        name = conn.name
        if name in self._claiming:
            raise name_taken(name)
        self._claiming.add(name)
        try:
            if name in self.conns:
                await self._claim_local(conn)  # the subscription stays with the name
                return
            nc = self._bus()
            ask = {"op": "claim", "takeover": conn.via_token, "instance": self.instance_id}
            try:
                msg = await nc.request(self.subject(name), json.dumps(ask).encode(),
                                       timeout=self.claim_timeout)
                if json.loads(msg.data).get("held"):
                    raise name_taken(name)
            except NoRespondersError:
                pass  # nobody holds it
            except NatsTimeout:
                raise _unavailable(f"no answer about {name} in time") from None
            self.conns[name] = conn
            self.subs[name] = await nc.subscribe(self.subject(name), cb=self._on_message)
            await nc.publish(self.subject(name), self._announce(conn))
            try:  # the server has the subscription before the daemon is acknowledged
                await nc.flush(max(1, round(self.claim_timeout)))
            except NatsError:
                await self.release(conn)
                raise _unavailable(f"could not subscribe for {name} in time") from None
        finally:
            self._claiming.discard(name)

    def _announce(self, conn: DaemonConnection) -> bytes:
        return json.dumps({"op": "announce", "instance": self.instance_id,
                           "since": conn.since}).encode()

    async def release(self, conn: DaemonConnection) -> None:
        held = self.conns.get(conn.name) is conn
        await super().release(conn)
        if held:
            sub = self.subs.pop(conn.name, None)
            if sub is not None and not self.nc.is_closed:
                await sub.unsubscribe()

    # -- relaying -----------------------------------------------------------------------
    async def relay(self, name: str, zone: str, request: dict[str, Any],
                    wait_sec: float) -> dict[str, Any]:
        if name in self.conns:
            return await super().relay(name, zone, request, wait_sec)
        nc = self._bus()
        ref = f"{self.instance_id}.{secrets.token_hex(8)}"
        ask = {"op": "req", "zone": zone, "request": request, "waitSec": wait_sec, "ref": ref}
        try:
            msg = await nc.request(self.subject(name), json.dumps(ask).encode(),
                                   timeout=wait_sec + 2.0)
        except NoRespondersError:
            raise offline(name) from None
        except NatsTimeout:
            raise timed_out(name, wait_sec) from None
        except NatsError as exc:
            raise _unavailable(str(exc) or type(exc).__name__) from None
        except asyncio.CancelledError:
            if nc.is_connected:
                await nc.publish(self.subject(name), json.dumps({"op": "cancel", "ref": ref}).encode())
            raise
        reply = json.loads(msg.data)
        if reply.get("status") == 200:
            body: dict[str, Any] = reply["body"]
            return body
        raise ProxyRefusal(int(reply["status"]), str(reply.get("code", "error")),
                           str(reply.get("message", "")), reply.get("retryAfter"))

    # -- messages for names this instance holds ------------------------------------------
    async def _on_message(self, msg: Msg) -> None:
        try:
            data = json.loads(msg.data)
            name = bytes.fromhex(msg.subject.rsplit(".", 1)[1]).decode("utf-8")
            op = data.get("op")
        except (ValueError, AttributeError):
            return
        if op == "req" and isinstance(data.get("ref"), str):
            task = asyncio.create_task(self._serve_remote(msg, name, data))
            self._serving[data["ref"]] = task
            task.add_done_callback(self._forget_serving(data["ref"]))
        elif op == "cancel":
            running = self._serving.get(str(data.get("ref")))
            if running is not None:
                running.cancel()
        elif op == "claim":
            await self._on_claim(msg, name, bool(data.get("takeover")))
        elif op == "announce" and data.get("instance") != self.instance_id:
            await self._on_announce(name, float(data.get("since", 0)), str(data.get("instance")))

    def _forget_serving(self, ref: str) -> Callable[[asyncio.Task[None]], None]:
        def forget(_task: asyncio.Task[None]) -> None:
            self._serving.pop(ref, None)
        return forget

    async def _serve_remote(self, msg: Msg, name: str, data: dict[str, Any]) -> None:
        try:
            body = await super().relay(name, str(data.get("zone")), dict(data["request"]),
                                       float(data["waitSec"]))
            reply: dict[str, Any] = {"status": 200, "body": body}
        except ProxyRefusal as r:
            reply = {"status": r.status, "code": r.code, "message": r.message,
                     "retryAfter": r.retry_after}
        except (KeyError, TypeError, ValueError):
            reply = {"status": 400, "code": "bad-request", "message": "malformed relay message"}
        if msg.reply:
            await msg.respond(json.dumps(reply).encode())

    async def _on_claim(self, msg: Msg, name: str, takeover: bool) -> None:
        conn = self.conns.get(name)
        answer: dict[str, Any]
        if conn is None or conn.closed:
            answer = {"held": False}
        elif takeover:
            conn.close(CLOSE_REPLACED, "replaced by a newer connection with the same credential")
            await self.release(conn)
            answer = {"released": True}
        else:
            answer = {"held": True, "instance": self.instance_id}
        await msg.respond(json.dumps(answer).encode())

    async def _on_announce(self, name: str, since: float, instance: str) -> None:
        conn = self.conns.get(name)
        if conn is None:
            return
        if (since, instance) < (conn.since, self.instance_id):
            conn.close(CLOSE_HELD_ELSEWHERE, "name claimed at the same time on another instance")
            await self.release(conn)
        else:
            await self.nc.publish(self.subject(name), self._announce(conn))
