"""Asking a resource daemon, through its proxy, to upload one file (protocol v1).

One call is one ``POST {proxy}/r/{resource}`` with a ``requestFromClient`` /
``fileUpload`` body. The daemon holds the request up to the inner ``timeoutMsec``
and answers the moment the upload completes, so a loop of these calls needs no
sleeps. Every HTTP failure becomes one of our exceptions here.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import requests

from ..errors import (
    ConfigError,
    ProtocolError,
    RemoteError,
    ResourceOfflineError,
    UnsupportedRequestError,
    connection_problem,
)
from ..messages import FileUploadResponse, ResponseToClient, UploadStatus, parse
from ._http import error_text

#: slack the proxy gets over the inner wait before it must answer (v1 clients use 5 s)
OUTER_SLACK_SEC = 5.0
#: extra time the HTTP call itself may take beyond the proxy's own deadline
HTTP_SLACK_SEC = 10.0


class Busy(Exception):
    """The proxy answered 429 or 504: try again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def resource_name_of(resource_url: str) -> str:
    """The resource name kachery-cloud derives: the last path segment of the URL."""
    parts = urlsplit(resource_url)
    name = parts.path.rstrip("/").split("/")[-1]
    if parts.scheme not in ("http", "https") or not parts.hostname or not name:
        raise ConfigError(
            f"KACHERY_RESOURCE_URL={resource_url!r} is not a resource URL; expected "
            "<proxy url>/r/<resource name>, as `kachery-resource share` prints it"
        )
    return name


class ResourceClient:
    """Sends ``fileUpload`` requests for one resource URL."""

    def __init__(self, session: requests.Session, resource_url: str, zone: str) -> None:
        self._session = session
        self.url = resource_url.rstrip("/")
        self.name = resource_name_of(self.url)
        self.zone = zone

    def request_upload(
        self, uri: str, wait_sec: float, max_http_sec: float | None = None
    ) -> UploadStatus:
        """Ask for ``uri``; the daemon answers within ``wait_sec`` (or on completion).

        ``max_http_sec`` caps the whole HTTP call (by default the proxy's deadline + 10 s).

        Raises ResourceOfflineError when no daemon serves the resource, Busy when the
        proxy asks us to come back later, RemoteError/ProtocolError for anything else.
        """
        resp = self._post({"type": "fileUpload", "uri": uri.split("?", 1)[0]}, wait_sec,
                          max_http_sec)
        return self._status_of(resp)

    def request_ranges(self, uri: str, ranges: list[tuple[int, int]],
                       wait_sec: float) -> dict[str, Any]:
        """Ask for the chunks covering ``ranges`` (``fileRanges``, docs/design-chunks.md);
        the daemon's answer. UnsupportedRequestError when the proxy or daemon does not
        take ``fileRanges``; otherwise the errors of :meth:`request_upload`."""
        resp = self._post({"type": "fileRanges", "uri": uri.split("?", 1)[0],
                           "ranges": [list(r) for r in ranges]}, wait_sec, None)
        if resp.status_code == 400 and _code(resp) == "unsupported-request":
            raise UnsupportedRequestError(error_text(resp), status=400)
        if resp.status_code != 200:
            self._status_of(resp)  # raises
        envelope = self._envelope(resp)
        if envelope.error:
            kind = (UnsupportedRequestError if "unsupported request type" in envelope.error
                    else RemoteError)
            raise kind(f"resource {self.name!r} could not answer: {envelope.error}")
        answer = envelope.response
        if not (isinstance(answer, dict) and answer.get("type") == "fileRanges"
                and isinstance(answer.get("status"), str)):
            raise ProtocolError(f"the proxy at {self.url} sent an unexpected fileRanges answer")
        return answer

    def _post(self, inner: dict[str, Any], wait_sec: float,
              max_http_sec: float | None) -> requests.Response:
        wait_ms = max(0, int(wait_sec * 1000))
        outer_ms = wait_ms + int(OUTER_SLACK_SEC * 1000)
        body = {
            "type": "requestFromClient",
            "resourceName": self.name,
            "zone": self.zone,
            "request": {**inner, "timeoutMsec": wait_ms},
            "timeoutMsec": outer_ms,
        }
        read_timeout = outer_ms / 1000 + HTTP_SLACK_SEC
        if max_http_sec is not None:
            read_timeout = max(0.5, min(read_timeout, max_http_sec))
        try:
            return self._session.post(self.url, json=body, timeout=(10, read_timeout))
        except requests.ConnectionError as exc:
            raise ResourceOfflineError(
                f"cannot reach the proxy at {self.url}: {connection_problem(exc)}; check "
                "KACHERY_RESOURCE_URL and that the proxy is running"
            ) from exc
        except requests.Timeout as exc:
            raise Busy(f"the proxy at {self.url} did not answer in time", 0.0) from exc
        except requests.RequestException as exc:
            raise ResourceOfflineError(f"request to the proxy at {self.url} failed: {exc}") from exc

    def _status_of(self, resp: requests.Response) -> UploadStatus:
        code = resp.status_code
        if code == 200:
            return self._parse(resp)
        reason = error_text(resp)
        if code in (404, 410, 502, 503):
            raise ResourceOfflineError(
                f"resource {self.name!r} is offline: the proxy at {self.url} answered HTTP {code} "
                f"({reason})" + ("" if "kachery-resource share" in reason
                                 else "; the data owner must run `kachery-resource share`"),
                status=code,
            )
        if code in (429, 504):
            retry_after = _retry_after(resp, 1.0 if code == 429 else 0.0)
            raise Busy(f"proxy answered HTTP {code}: {reason}", retry_after)
        raise RemoteError(
            f"the proxy at {self.url} refused the request (HTTP {code}): {reason}"
            + ("; check that KACHERY_ZONE matches the resource's zone" if "zone" in reason.lower() else ""),
            status=code,
        )

    def _envelope(self, resp: requests.Response) -> ResponseToClient:
        try:
            envelope: ResponseToClient = parse(ResponseToClient, resp.content)
        except ProtocolError as exc:
            raise ProtocolError(f"the proxy at {self.url} sent an unexpected answer: {exc}") from exc
        return envelope

    def _parse(self, resp: requests.Response) -> UploadStatus:
        envelope = self._envelope(resp)
        if envelope.error:
            raise RemoteError(f"resource {self.name!r} could not answer: {envelope.error}")
        if envelope.response is None:
            raise ProtocolError(f"the proxy at {self.url} sent a responseToClient without a response")
        inner: FileUploadResponse = parse(FileUploadResponse, envelope.response)
        return inner.status


def _code(resp: requests.Response) -> str | None:
    try:
        body = json.loads(resp.text)
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


def _retry_after(resp: requests.Response, default: float) -> float:
    value = resp.headers.get("Retry-After")
    try:
        return min(30.0, max(0.0, float(value))) if value else default
    except ValueError:
        return default


