"""kachery-resource: make local files available to kachery clients on demand."""

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
    "parse_sha1_uri",
]
