"""The proxy's refusals: an HTTP status, a machine-readable code and a message.

Every error the proxy answers renders as one JSON shape::

    {"message": "<what happened and what to do>", "code": "<kebab-case reason>"}
"""

from __future__ import annotations

from ..errors import KacheryResourceError


class ProxyRefusal(KacheryResourceError):
    """Raised to answer a client (or close a daemon socket) with a clear reason."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def body(self) -> dict[str, str]:
        return {"message": self.message, "code": self.code}


def bad_request(message: str) -> ProxyRefusal:
    return ProxyRefusal(400, "bad-request", message)


def offline(name: str) -> ProxyRefusal:
    return ProxyRefusal(
        404, "resource-not-found",
        f"resource not found: {name} (no daemon is connected for it; is `kachery-resource share` running?)",
    )


def timed_out(name: str, wait_sec: float) -> ProxyRefusal:
    return ProxyRefusal(
        504, "timeout",
        f"timeout waiting for response: resource {name} did not answer within {wait_sec:g} s; "
        "ask again (uploads keep running between requests)",
    )
