"""Every exception kachery-resource raises on purpose.

::

    KacheryResourceError            base of everything below; the CLI prints its message
    ├── InvalidUriError             a string is not a valid ``sha1://<40 hex>`` URI
    ├── ConfigError                 a config file or setting is missing or invalid
    ├── KeysError                   client keys are missing or malformed
    ├── StoreError                  the local store ($KACHERY_CLOUD_DIR) cannot be read/written
    │   └── FileChangedError        a linked file no longer matches the hash it was linked under
    ├── IntegrityError              bytes do not hash to the sha1 they were claimed to have
    ├── ProtocolError               a peer sent a message that does not follow the protocol
    └── RemoteError                 a server answered with an error
        ├── GatewayError            the zone gateway refused a request
        ├── ResourceOfflineError    no daemon is connected for the requested resource
        ├── UploadFailedError       the daemon reported that the upload failed
        ├── FileNotFoundOnResource  the daemon does not have the requested file
        └── TimeoutError_           a bounded wait ran out

Messages are written for the person reading them: what went wrong and what to do.
"""

from __future__ import annotations

import os
import socket
import ssl


class KacheryResourceError(Exception):
    """Base class: raised for every failure kachery-resource reports on purpose."""

    exit_code = 1


class InvalidUriError(KacheryResourceError, ValueError):
    """Raised when a string is not a valid ``sha1://<40 lowercase hex>`` URI."""

    exit_code = 2


class ConfigError(KacheryResourceError):
    """Raised when a configuration file or setting is missing or invalid."""

    exit_code = 2


class KeysError(KacheryResourceError):
    """Raised when kachery-cloud client keys are missing or malformed."""

    exit_code = 2


class StoreError(KacheryResourceError):
    """Raised when the local store cannot be read or written."""


class FileChangedError(StoreError):
    """Raised when a linked file's bytes, size or mtime no longer match its record."""


class IntegrityError(KacheryResourceError):
    """Raised when bytes do not hash to the sha1 they were claimed to have."""


class ProtocolError(KacheryResourceError):
    """Raised when a peer sends a message that does not follow the protocol."""


class ProxyRefusedError(ProtocolError):
    """Raised when the proxy refuses the daemon for a reason retrying cannot cure (a wrong
    secret, a name held by another credential, another zone); the message names the fix."""

    exit_code = 2


class RemoteError(KacheryResourceError):
    """Raised when a server answers with an error; ``status`` is the HTTP status if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GatewayError(RemoteError):
    """Raised when the zone gateway refuses a request."""

    exit_code = 4


class UnsupportedRequestError(RemoteError):
    """Raised when a resource (its proxy or daemon) does not answer a request type, e.g.
    ``fileRanges``; the reader then loads the whole file instead."""


class ResourceOfflineError(RemoteError):
    """Raised when no daemon is connected to the proxy for the requested resource."""

    exit_code = 5


class UploadFailedError(RemoteError):
    """Raised when the resource daemon reports that uploading the file failed."""

    exit_code = 6


class FileNotFoundOnResource(RemoteError):
    """Raised when neither the gateway nor the resource daemon has the requested file."""

    exit_code = 3


class TimeoutError_(RemoteError):
    """Raised when a bounded wait runs out before the operation finished."""

    exit_code = 7


def connection_problem(exc: BaseException) -> str:
    """Why a connection failed, in a few words ("connection refused"), instead of the
    nested repr that requests, urllib3 and aiohttp build around the operating system's
    error."""
    chain: list[BaseException] = []
    todo: list[object] = [exc]
    while todo:
        err = todo.pop(0)
        if isinstance(err, BaseException) and all(err is not seen for seen in chain):
            chain.append(err)
            todo.extend([*err.args, getattr(err, "reason", None), err.__cause__, err.__context__])
    tls = [err for err in chain if isinstance(err, ssl.SSLError)]
    if tls:  # first: an SSLError is an OSError whose errno means nothing here
        details = [getattr(err, "verify_message", None) or getattr(err, "reason", None) for err in tls]
        return f"TLS error ({next((d for d in details if d), 'handshake failed')})"
    for err in chain:
        if isinstance(err, socket.gaierror) or (isinstance(err, OSError) and (err.errno or 0) < 0):
            return "the host name could not be resolved"  # getaddrinfo's codes are negative
        if isinstance(err, OSError) and (err.errno or err.strerror):
            text = os.strerror(err.errno) if err.errno else str(err.strerror)
            return text[0].lower() + text[1:]
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
