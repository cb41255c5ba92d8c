"""``GET /registerClient/<id>`` (the URL kachery-cloud-init prints) and ``GET /client/<id>``.

Registration proves key ownership with the ``{"type":"addClient"}`` signature and records
the client in the zone: approved (upload + download) at once if the zone auto-approves,
otherwise as a pending request an admin approves with ``gateway clients add``.
"""

from __future__ import annotations

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
            return _answer(existing, "this client is already registered")
        auto = zone.settings.auto_approve_clients
        record = ClientRecord(
            clientId=client_id, zone=zone.name, label=label,
            ownerId="self-registered" if auto else "",
            timestampCreated=existing.timestampCreated if existing else now_ms(),
            approved=auto, upload=auto, download=True,
        )
        await zone.registry.put(record)
        if auto:
            return _answer(record, "registered and approved; you can now use this client")
        return _answer(record, "registration request recorded; an administrator must approve it: "
                               f"kachery-resource gateway clients add {client_id} --zone {zone.name} --upload")

    async def show(self, request: web.Request) -> web.Response:
        """What the gateway knows about a client (``init()`` prints this URL when registered)."""
        client_id = self._client_id(request)
        zone = self._zone(request.query.get("zone", "default"))
        record = await zone.registry.get(client_id)
        if record is None:
            raise ApiError(404, "client_not_found", f"client {client_id} is not known in zone {zone.name!r}")
        return _answer(record, record.rights())


def _answer(record: ClientRecord, message: str) -> web.Response:
    return web.json_response({
        "clientId": record.clientId, "zone": record.zone, "label": record.label,
        "status": "approved" if record.approved else "pending",
        "upload": record.upload, "download": record.download, "message": message,
    })
