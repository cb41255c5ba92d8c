"""``GET /registerClient/<id>`` (the URL kachery-cloud-init prints) and ``GET /client/<id>``.

Registration proves key ownership with the ``{"type":"addClient"}`` signature and records
the client in the zone: approved (upload + download) at once if the zone auto-approves,
otherwise as a pending request an admin approves with ``gateway clients add``.

A browser (``Accept: text/html``) gets a page that says where the client stands and, while
it is pending, the command the zone operator runs; programs get JSON.
"""

from __future__ import annotations

import html
import shlex

from aiohttp import web

from ..identity import is_client_id, verify_signature
from .problems import ApiError, bad_request
from .registry import ClientRecord, now_ms
from .zones import Zone

ADD_CLIENT = {"type": "addClient"}
MAX_LABEL = 200


class RegistrationRoutes:
    """Client self-registration for every zone."""

    def __init__(self, zones: dict[str, Zone]) -> None:
        self.zones = zones

    def _zone(self, name: str) -> Zone:
        zone = self.zones.get(name)
        if zone is None:
            raise ApiError(404, "unknown_zone",
                           f"this gateway has no zone {name!r}; its zones: {', '.join(sorted(self.zones))}")
        return zone

    @staticmethod
    def _client_id(request: web.Request) -> str:
        client_id = request.match_info["client_id"]
        if not is_client_id(client_id):
            raise bad_request("invalid_client_id",
                              "a client id is 64 lowercase hexadecimal characters (the public key)")
        return client_id

    async def register(self, request: web.Request) -> web.Response:
        """Record a registration request (or an auto-approved client)."""
        try:
            record, message = await self._register(request)
        except ApiError as exc:
            if wants_html(request):
                return _error_page(exc)
            raise
        return _answer(request, record, message)

    async def _register(self, request: web.Request) -> tuple[ClientRecord, str]:
        client_id = self._client_id(request)
        zone = self._zone(request.query.get("zone", "default"))
        signature = request.query.get("signature", "")
        label = request.query.get("label", "")[:MAX_LABEL]
        if not verify_signature(ADD_CLIENT, client_id, signature):
            raise ApiError(401, "invalid_signature",
                           "the signature is not this client's signature of {\"type\":\"addClient\"}; "
                           "use the exact URL kachery-cloud-init printed")
        existing = await zone.registry.get(client_id)
        if existing is not None and existing.approved:
            return existing, "this client is already registered"
        auto = zone.settings.auto_approve_clients
        record = ClientRecord(
            clientId=client_id, zone=zone.name, label=label,
            ownerId="self-registered" if auto else "",
            timestampCreated=existing.timestampCreated if existing else now_ms(),
            approved=auto, upload=auto, download=True,
        )
        await zone.registry.put(record)
        if auto:
            return record, "registered and approved; you can now use this client"
        return record, ("registration request recorded; an administrator must approve it: "
                        + approve_command(record))

    async def show(self, request: web.Request) -> web.Response:
        """What the gateway knows about a client (``init()`` prints this URL when registered)."""
        try:
            client_id = self._client_id(request)
            zone = self._zone(request.query.get("zone", "default"))
            record = await zone.registry.get(client_id)
            if record is None:
                raise ApiError(404, "client_not_found", f"client {client_id} is not known in zone {zone.name!r}")
        except ApiError as exc:
            if wants_html(request):
                return _error_page(exc)
            raise
        return _answer(request, record, record.rights())


def approve_command(record: ClientRecord) -> str:
    """The command the zone operator runs to approve ``record`` (upload and download)."""
    return shlex.join(["kachery-resource", "gateway", "clients", "add", record.clientId,
                       "--zone", record.zone, "--upload"])


def wants_html(request: web.Request) -> bool:
    """A browser asks for ``text/html`` first; programs ask for JSON or anything (``*/*``)."""
    accept = request.headers.get("Accept", "")
    first = accept.split(",", 1)[0].split(";", 1)[0].strip().lower()
    return first in ("text/html", "application/xhtml+xml")


def _answer(request: web.Request, record: ClientRecord, message: str) -> web.Response:
    if wants_html(request):
        return _page(record, message)
    return web.json_response({
        "clientId": record.clientId, "zone": record.zone, "label": record.label,
        "status": "approved" if record.approved else "pending",
        "upload": record.upload, "download": record.download, "message": message,
    })


_CSP = "default-src 'none'; style-src 'unsafe-inline'"
_STYLE = ("body{font-family:system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em;"
          "line-height:1.5}pre{background:#f4f4f4;padding:.8em;overflow-x:auto;white-space:pre-wrap;"
          "word-break:break-all}dt{font-weight:bold}")


def _html(title: str, body: str, status: int = 200) -> web.Response:
    text = (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>")
    return web.Response(text=text, status=status, content_type="text/html",
                        headers={"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff"})


def _page(record: ClientRecord, message: str) -> web.Response:
    e = html.escape
    rights = ", ".join(r for r, on in (("upload", record.upload), ("download", record.download)) if on)
    facts = (f"<dl><dt>Client ID</dt><dd><code>{e(record.clientId)}</code></dd>"
             f"<dt>Zone</dt><dd>{e(record.zone)}</dd><dt>Label</dt><dd>{e(record.label) or '—'}</dd>"
             f"<dt>Rights</dt><dd>{e(rights) or 'none'}</dd></dl>")
    if record.approved:
        body = (f"<p><strong>This client is approved</strong>; it can be used now.</p>{facts}"
                "<p>If <code>kachery-cloud-init</code> is waiting, press Enter in its terminal.</p>")
        return _html("kachery client: approved", body)
    body = (f"<p><strong>Registration request recorded; it waits for the zone operator's "
            f"approval.</strong></p>{facts}"
            "<p>Send this page's address to the operator of this zone. They approve the client "
            "by running, on the machine that runs the gateway (with the same <code>--storage</code> "
            "or <code>--config</code> the gateway uses):</p>"
            f"<pre>{e(approve_command(record))}</pre>"
            "<p>Once they have, press Enter in the terminal where <code>kachery-cloud-init</code> "
            "waits; it then reports success. Reload this page to see the new status.</p>")
    return _html("kachery client: waiting for approval", body)


def _error_page(exc: ApiError) -> web.Response:
    body = f"<p>{html.escape(str(exc))}</p><p>(HTTP {exc.http_status}, {html.escape(exc.code)})</p>"
    return _html("kachery client registration failed", body, status=exc.http_status)
