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
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from ..errors import ConfigError
from .connection import DaemonConnection
from .errors import ProxyRefusal, offline, timed_out
from .registry import CLOSE_REPLACED, LocalRegistry, name_taken

CLOSE_HELD_ELSEWHERE = 4002


def _unavailable(what: str) -> ProxyRefusal:
    return ProxyRefusal(503, "cluster-unavailable",
                        f"the proxy cluster bus (NATS) is not available: {what}; retry shortly")


class NatsRegistry(LocalRegistry):
    """A registry shared by every proxy instance connected to one NATS server."""

    def __init__(self, url: str, prefix: str, instance_id: str, claim_timeout: float = 2.0):
        super().__init__()
        self.url = url
        self.prefix = prefix
        self.instance_id = instance_id
        self.claim_timeout = claim_timeout
        self.nc: Client | None = None
        self.subs: dict[str, Subscription] = {}
        self._claiming: set[str] = set()
        self._serving: dict[str, asyncio.Task[None]] = {}

    def subject(self, name: str) -> str:
        return f"{self.prefix}.r.{name.encode('utf-8').hex()}"

    async def start(self) -> None:
        try:
            self.nc = await nats.connect(self.url, name=f"kachery-proxy-{self.instance_id}",
                                         max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                         connect_timeout=5)
        except (NatsError, OSError) as exc:
            raise ConfigError(f"cannot connect to NATS at {self.url}: {exc}") from exc

    async def stop(self) -> None:
        for task in list(self._serving.values()):
            task.cancel()
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()

    @property
    def healthy(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    def serving_count(self) -> int:
        return len(self._serving)

    def _bus(self) -> Client:
        if self.nc is None or not self.nc.is_connected:
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
            if sub is not None and self.nc is not None and not self.nc.is_closed:
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
        if conn is None or self.nc is None:
            return
        if (since, instance) < (conn.since, self.instance_id):
            conn.close(CLOSE_HELD_ELSEWHERE, "name claimed at the same time on another instance")
            await self.release(conn)
        else:
            await self.nc.publish(self.subject(name), self._announce(conn))
