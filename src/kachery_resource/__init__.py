"""kachery-resource: make local files available to kachery clients on demand."""

from .client import load_file, load_files, request_file, stream_file
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
    ProxyRefusedError,
    RemoteError,
    ResourceOfflineError,
    StoreError,
    TimeoutError_,
    UnsupportedRequestError,
    UploadFailedError,
)
from .reader import open
from .uri import kachery_uri, parse_sha1_uri, parse_uri

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
    "ProxyRefusedError",
    "RemoteError",
    "ResourceOfflineError",
    "StoreError",
    "TimeoutError_",
    "UnsupportedRequestError",
    "UploadFailedError",
    "kachery_uri",
    "load_file",
    "load_files",
    "open",
    "parse_sha1_uri",
    "parse_uri",
    "request_file",
    "stream_file",
]
