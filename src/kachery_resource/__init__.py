"""kachery-resource: make local files available to kachery clients on demand."""

from .client import load_file, request_file
from .errors import (
    ConfigError,
    FileChangedError,
    FileNotFoundOnResource,
    GatewayError,
    IntegrityError,
    InvalidUriError,
    KacheryResourceError,
    KeysError,
    ProtocolError,
    RemoteError,
    ResourceOfflineError,
    StoreError,
    TimeoutError_,
    UploadFailedError,
)
from .reader import open
from .uri import parse_sha1_uri

__all__ = [
    "ConfigError",
    "FileChangedError",
    "FileNotFoundOnResource",
    "GatewayError",
    "IntegrityError",
    "InvalidUriError",
    "KacheryResourceError",
    "KeysError",
    "ProtocolError",
    "RemoteError",
    "ResourceOfflineError",
    "StoreError",
    "TimeoutError_",
    "UploadFailedError",
    "load_file",
    "open",
    "parse_sha1_uri",
    "request_file",
]
