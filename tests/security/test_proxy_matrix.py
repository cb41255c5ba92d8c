"""Security matrix of the proxy: every entry point with every kind of credential.

Entry points (``proxy/app.py``): the daemon WebSocket at ``/`` — on the lean front
(``ws_front``, production) and on plain aiohttp (``daemon_socket.root``) — and the
client HTTP routes ``POST /r/{resource}``, ``GET /``, ``/probe``, ``/healthz``,
``/api/info``, ``/metrics``, ``/openapi.json``.

A daemon's credential is a bearer secret in ``initialize.proxySecret`` (the shared proxy
secret, or a per-resource token bound to a zone). There are no signatures or timestamps
on this path, so "expired" means a token removed from the tokens file, and "replayed"
means the same initialize sent again from a second socket. Clients carry no credential
(kachery clients are anonymous by protocol); what they may not do is reach a resource
in a zone it is not served in, or learn any credential from a public route.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from kachery_resource.cli import cli
from kachery_resource.proxy.app import build_app
from kachery_resource.proxy.serving import start_proxy
from kachery_resource.proxy.settings import ProxySettings

from ..proxy.conftest import client_body
from ..proxy.v1daemon import V1Daemon

pytestmark = pytest.mark.timeout(120)

SECRET = "matrix-shared-secret"
ACK, UNAUTHORIZED, NAME_TAKEN, ZONE, PROTOCOL = 0, 4001, 4002, 4003, 4004


def add_token(path: Path, name: str, zone: str) -> str:
    done = CliRunner().invoke(cli, ["proxy", "tokens", "add", name, "--zone", zone,
                                    "--tokens-file", str(path)])
    assert done.exit_code == 0, done.output
    return done.stdout.strip()


@dataclass
class Deployment:
    url: str
    tokens_file: Path
    tokens: dict[str, str]  # resource name -> plain token
    held: list[V1Daemon]

    async def init(self, name: str, secret: str | None, zone: str = "default") -> V1Daemon:
        """Connect a daemon and send initialize (``secret`` None: the field left out)."""
        d = V1Daemon(self.url, name, secret if secret is not None else "", zone=zone)
        self.held.append(d)
        if secret is None:
            d.session = aiohttp.ClientSession()
            d.ws = await d.session.ws_connect("ws" + self.url[4:])
            await d.ws.send_str(json.dumps({"type": "initialize", "resourceName": name,
                                            "zone": zone}))
            msg = await d.ws.receive(timeout=5)
            assert msg.type != aiohttp.WSMsgType.TEXT, msg
            d.close_code = d.ws.close_code
        else:
            await d.connect()
        return d


Front = Callable[..., Awaitable[Deployment]]


@pytest.fixture(params=["lean", "aiohttp"])
async def deploy(request: pytest.FixtureRequest, tmp_path: Path,
                 aiohttp_client: Any) -> AsyncIterator[Front]:
    """A proxy with a shared secret and two per-resource tokens (res-a in zone zA,
    res-b in zone default), on the production front or on plain aiohttp."""
    made: list[Deployment] = []
    stops: list[Callable[[], Awaitable[None]]] = []

    async def make(**extra: Any) -> Deployment:
        path = tmp_path / f"tokens{len(made)}.json"
        tokens = {"res-a": add_token(path, "res-a", "zA"),
                  "res-b": add_token(path, "res-b", "default")}
        settings = ProxySettings(port=0, proxy_secret=SECRET, access_log="off",
                                 tokens_file=path, **extra)
        app = build_app(settings)
        if request.param == "lean":
            running = await start_proxy(app, "127.0.0.1", 0)
            url = running.url
            stops.append(running.stop)
        else:
            client = await aiohttp_client(app)
            url = str(client.make_url("")).rstrip("/")
        made.append(Deployment(url, path, tokens, []))
        return made[-1]

    yield make
    for dep in made:
        for d in dep.held:
            await d.close()
    for stop in stops:
        await stop()


# (case, resource name, credential, zone claimed, expected close code or ACK)
# credential: "shared", "token:<resource>", "wrong", "" (empty), None (field missing)
DAEMON_MATRIX: list[tuple[str, str, str | None, str, int]] = [
    ("shared secret, name without token", "free", "shared", "default", ACK),
    ("shared secret, other zone, name without token", "free", "shared", "zX", ACK),
    ("no credential (empty)", "free", "", "default", UNAUTHORIZED),
    ("no credential (field missing)", "free", None, "default", PROTOCOL),
    ("wrong secret", "free", "wrong", "default", UNAUTHORIZED),
    ("secret with a stray byte", "free", "shared+", "default", UNAUTHORIZED),
    ("own token, own zone", "res-a", "token:res-a", "zA", ACK),
    ("own token, another zone", "res-a", "token:res-a", "default", ZONE),
    ("another resource's token", "res-a", "token:res-b", "zA", UNAUTHORIZED),
    ("a token for a name without token", "free", "token:res-a", "default", UNAUTHORIZED),
    ("shared secret for a name with a token", "res-a", "shared", "zA", UNAUTHORIZED),
    ("own token with a stray byte", "res-b", "token:res-b+", "default", UNAUTHORIZED),
    ("own token, other resource in its zone", "res-b", "token:res-a", "default", UNAUTHORIZED),
]


def credential(dep: Deployment, kind: str | None) -> str | None:
    if kind is None or kind == "":
        return kind
    stray = kind.endswith("+")
    kind = kind.rstrip("+")
    value = SECRET if kind == "shared" else "wrong-secret" if kind == "wrong" else \
        dep.tokens[kind.split(":")[1]]
    return value + "x" if stray else value


async def test_daemon_initialize_matrix(deploy: Front) -> None:
    dep = await deploy()
    outcomes = {}
    for case, name, kind, zone, _ in DAEMON_MATRIX:
        d = await dep.init(name, credential(dep, kind), zone)
        outcomes[case] = ACK if d.close_code is None and d.ws is not None and not d.ws.closed \
            else d.close_code
        await d.close()  # frees the name for the next row
    assert outcomes == {case: want for case, *_, want in DAEMON_MATRIX}


async def test_replayed_initialize(deploy: Front) -> None:
    """The same initialize from a second socket: with the shared secret the name is taken
    (4002) and the first socket keeps it; a wrong token cannot take over a token holder."""
    dep = await deploy()
    first = await dep.init("free", SECRET)
    assert first.close_code is None
    assert (await dep.init("free", SECRET)).close_code == NAME_TAKEN
    owner = await dep.init("res-b", dep.tokens["res-b"])
    assert owner.close_code is None
    assert (await dep.init("res-b", dep.tokens["res-a"])).close_code == UNAUTHORIZED
    assert (await dep.init("res-b", SECRET)).close_code == UNAUTHORIZED
    async with aiohttp.ClientSession() as s:
        for name, d in (("free", first), ("res-b", owner)):
            owner.statuses["b" * 40] = first.statuses["b" * 40] = {"status": "completed",
                                                                   "size": 3}
            async with s.post(f"{dep.url}/r/{name}", json=client_body(name, "b" * 40)) as r:
                assert r.status == 200, await r.text()
            assert d.answered == 1


async def test_revoked_token_no_longer_opens(deploy: Front) -> None:
    """An expired credential: a token removed from the tokens file (re-read by mtime)."""
    dep = await deploy()
    token = dep.tokens["res-b"]
    assert (await dep.init("res-b", token)).close_code is None
    await dep.held[-1].close()
    done = CliRunner().invoke(cli, ["proxy", "tokens", "remove", "res-b",
                                    "--tokens-file", str(dep.tokens_file)])
    assert done.exit_code == 0, done.output
    assert (await dep.init("res-b", token)).close_code == UNAUTHORIZED
    # the name is now an ordinary one: the shared secret opens it again
    assert (await dep.init("res-b", SECRET)).close_code is None


async def test_tokens_required_refuses_the_shared_secret(deploy: Front) -> None:
    dep = await deploy(require_tokens=True)
    assert (await dep.init("free", SECRET)).close_code == UNAUTHORIZED
    assert (await dep.init("res-b", dep.tokens["res-b"])).close_code is None


async def test_clients_reach_a_resource_only_in_its_zone(deploy: Front) -> None:
    dep = await deploy()
    d = await dep.init("res-a", dep.tokens["res-a"], "zA")
    d.statuses["a" * 40] = {"status": "completed", "size": 1}
    async with aiohttp.ClientSession() as s:
        for zone, want in (("zA", 200), ("default", 500), ("zB", 500)):
            body = client_body("res-a", "a" * 40, zone=zone)
            async with s.post(f"{dep.url}/r/res-a", json=body) as r:
                answer = await r.json()
                assert r.status == want, answer
                if want != 200:
                    assert answer["code"] == "zone-mismatch"
        # a client's credentials of any kind change nothing: no header opens another zone
        for headers in ({"Authorization": f"Bearer {dep.tokens['res-a']}"},
                        {"Authorization": f"Bearer {SECRET}"}, {"X-Proxy-Secret": SECRET}):
            async with s.post(f"{dep.url}/r/res-a", headers=headers,
                              json=client_body("res-a", "a" * 40, zone="default")) as r:
                assert r.status == 500
    assert d.answered == 1


PUBLIC_ROUTES = ["/", "/probe", "/healthz", "/api/info", "/metrics", "/openapi.json"]


async def test_no_public_route_shows_a_credential(deploy: Front) -> None:
    dep = await deploy()
    await dep.init("res-a", dep.tokens["res-a"], "zA")
    await dep.init("free", SECRET)
    stored = dep.tokens_file.read_text()
    hashes = [t["sha256"] for t in json.loads(stored)["tokens"].values()]
    secrets_ = [SECRET, *dep.tokens.values(), *[t[4:] for t in dep.tokens.values()], *hashes]
    async with aiohttp.ClientSession() as s:
        for path in PUBLIC_ROUTES:
            for method in ("GET", "POST", "PUT", "DELETE"):
                async with s.request(method, dep.url + path) as r:
                    text = await r.text()
                    assert r.status < 500, (method, path, r.status, text)
                    leaked = [x for x in secrets_ if x in text]
                    assert leaked == [], (method, path)


def test_the_matrix_covers_every_route() -> None:
    """A new proxy route fails here until the matrix above tries it."""
    app = build_app(ProxySettings(port=0, proxy_secret=SECRET, access_log="off"))
    routes = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.resource is not None}
    covered = {("POST", "/r/{resource}"), ("GET", "/")} | {
        (m, p) for p in PUBLIC_ROUTES for m in ("GET", "HEAD")}
    assert routes == covered
