"""The zone gateway as a client sees it: ``findFile`` calls.

Two APIs: kachery-cloud 0.4.10's signed ``POST /api/gateway`` (the default), or, when an
API key is given (``KACHERY_API_KEY``), kachery 2.x's ``POST /api/findFile`` with
``Authorization: Bearer <key>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from ..errors import GatewayError, connection_problem
from ..identity import ClientKeys, signed_envelope
from ._http import error_code, error_text


def no_keys_hint(zone: str) -> str:
    """What a client without keys can do when a zone refuses its throw-away key."""
    return (
        "this client has no kachery-cloud keys, so it signed with a throw-away key, which the "
        "zone only accepts if it allows public download. Create keys with `kachery-resource init` "
        "or `kachery-cloud-init` (or set KACHERY_CLOUD_CLIENT_ID and KACHERY_CLOUD_PRIVATE_KEY), "
        "then ask the zone admin to run `kachery-resource gateway clients add <CLIENT_ID> "
        f"--zone {zone} --download`; or set KACHERY_API_KEY to a kachery 2.x API key from the "
        f"zone admin (`kachery-resource gateway users add NAME --zone {zone}`)"
    )


@dataclass(frozen=True)
class FoundFile:
    """A file the gateway has: where to download it and how big it is."""

    url: str
    size: int | None


#: how long a findFile answer may take: a gateway may ask the zone's resources first and
#: wait for the upload (``onDemandWaitSec``, at most 300 s; 25 s by default)
FIND_READ_TIMEOUT_SEC = 310.0


class GatewayClient:
    """Calls ``POST {gateway}/api/gateway`` signed with the client's keys.

    Without keys it signs with an ephemeral key (enough for a zone that allows public
    download) and, if refused, says how to create and register keys.
    """

    def __init__(
        self,
        session: requests.Session,
        gateway_url: str,
        zone: str,
        keys: ClientKeys | None,
        timeout: float = 30,
        api_key: str | None = None,
    ) -> None:
        self._session = session
        self._api_key = api_key
        self.url = gateway_url.rstrip("/") + ("/api/findFile" if api_key else "/api/gateway")
        self.zone = zone
        self._ephemeral = keys is None
        self._keys = keys or ClientKeys.generate()
        self._timeout = timeout

    def find_file(self, sha1: str) -> FoundFile | None:
        """Where to download ``sha1`` from, or None if the zone's bucket lacks it."""
        if self._api_key:
            body = self._call({"type": "findFileRequest", "hashAlg": "sha1", "hash": sha1,
                               "zoneName": self.zone}, FIND_READ_TIMEOUT_SEC)
        else:
            body = self._call({"type": "findFile", "hashAlg": "sha1", "hash": sha1,
                               "zone": self.zone}, FIND_READ_TIMEOUT_SEC)
        if not body.get("found"):
            return None
        url = body.get("url")
        if not isinstance(url, str) or not url:
            raise GatewayError(f"the gateway at {self.url} said it found {sha1} but gave no url")
        size = body.get("size")
        return FoundFile(url=url, size=size if isinstance(size, int) else None)

    def find_chunks(self, sha1: str, indices: list[int], pending: bool = False) -> dict[str, Any]:
        """``findChunks`` (docs/design-chunks.md): the chunk list and chunk URLs of a file
        not yet whole in the bucket, or ``wholeFile``, or ``found: false``. ``pending``:
        URLs of chunks not uploaded yet too (asked for while the daemon uploads them)."""
        payload = {"type": "findChunks", "hashAlg": "sha1", "hash": sha1, "zone": self.zone,
                   "indices": indices}
        return self._call({**payload, "includePending": True} if pending else payload)

    def client_registered(self, client_id: str) -> bool:
        """Whether ``client_id`` is a registered (approved) client of the zone."""
        body = self._call({"type": "getClientInfo", "clientId": client_id, "zone": self.zone})
        return body.get("found") is True

    def _refusal(self, resp: requests.Response, what: str) -> GatewayError:
        """The error for a non-200 answer: the gateway's reason and what to do about it."""
        status, reason = resp.status_code, error_text(resp)
        if self._ephemeral and not self._api_key and error_code(resp) == "client_not_registered":
            # the gateway names the throw-away client id, which registering would not help
            reason = f"zone {self.zone!r} does not allow download without registered keys"
        message = f"the gateway at {self.url} refused {what} (HTTP {status}): {reason}"
        return GatewayError(message + self._hint(status, reason), status=status)

    def _hint(self, status: int, reason: str) -> str:
        """What to do about a refusal, for the API in use (unless the reason says it)."""
        if self._api_key:
            if status == 404 and self.url.endswith("/api/findFile"):
                return ("; if this gateway does not serve the kachery 2.x API, unset "
                        "KACHERY_API_KEY to use the kachery-cloud API")
            if status in (401, 403) and "KACHERY_API_KEY" not in reason:
                return "; check KACHERY_API_KEY, or ask the zone operator for a key with download rights"
            return ""
        if self._ephemeral and status in (401, 403, 500):
            return f"; {no_keys_hint(self.zone)}"
        return ""

    def _call(self, payload: dict[str, Any], read_timeout: float = 0) -> dict[str, Any]:
        timeout = (self._timeout, max(self._timeout, read_timeout))
        if self._api_key:
            body: dict[str, Any] = payload
            headers = {"Authorization": f"Bearer {self._api_key}"}
        else:
            body, headers = signed_envelope(self._keys, payload), {}
        try:
            resp = self._session.post(self.url, json=body, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            raise GatewayError(
                f"cannot reach the gateway at {self.url}: {connection_problem(exc)}; check "
                "KACHERY_GATEWAY_URL"
            ) from exc
        if resp.status_code != 200:
            raise self._refusal(resp, str(payload["type"]))
        try:
            body = resp.json()
        except ValueError as exc:
            raise GatewayError(f"the gateway at {self.url} answered with invalid JSON") from exc
        if not isinstance(body, dict):
            raise GatewayError(f"the gateway at {self.url} answered with a non-object JSON body")
        return body
