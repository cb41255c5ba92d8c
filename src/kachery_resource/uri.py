"""File URIs: the one strict parser and the formatters every module uses.

Two forms name a file by its sha1:

=====================================  ============================================
``sha1://<40 hex>[?label=…&…]``        kachery-cloud 0.4.10 (and kachery 2.x type 1)
``kachery:<zone>:sha1:<40 hex>[:label]``  kachery 2.x (type 2); the zone is part of it
=====================================  ============================================

:func:`parse_uri` reads both into a :class:`FileUri` (sha1, zone or None, label or
None); :func:`sha1_uri` and :func:`kachery_uri` write them. Labels are percent-encoded
in both forms, as kachery writes them, and decoded by the parser. Nothing in a URI ever
names a path we read: the label and any other query parameter are only text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote

from .errors import InvalidUriError

_SHA1 = re.compile(r"[0-9a-f]{40}")
#: a zone name, as the gateway accepts it
ZONE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_EXPECTED = (
    "expected sha1://<40 lowercase hex> or kachery:<zone>:sha1:<40 lowercase hex>, "
    "e.g. sha1://da39a3ee5e6b4b0d3255bfef95601890afd80709"
)


@dataclass(frozen=True)
class FileUri:
    """What a URI names: the file's sha1, and the zone and label if the URI gives them."""

    sha1: str
    zone: str | None = None
    label: str | None = None


def is_sha1_hex(value: object) -> bool:
    """Answer whether ``value`` is exactly 40 lowercase hex characters."""
    return isinstance(value, str) and _SHA1.fullmatch(value) is not None


def ensure_sha1_hex(value: object) -> str:
    """Return ``value`` if it is a 40-lowercase-hex sha1, else raise InvalidUriError."""
    if not is_sha1_hex(value):
        raise InvalidUriError(
            f"not a sha1 hash: {value!r}; expected 40 lowercase hexadecimal characters"
        )
    assert isinstance(value, str)
    return value


def parse_uri(uri: str) -> FileUri:
    """Parse ``sha1://…`` or ``kachery:ZONE:sha1:…``; anything else is InvalidUriError."""
    if isinstance(uri, str) and uri.startswith("sha1://"):
        return _parse_sha1_form(uri)
    if isinstance(uri, str) and uri.startswith("kachery:"):
        return _parse_kachery_form(uri)
    raise InvalidUriError(f"not a kachery URI: {uri!r}; {_EXPECTED}")


def parse_sha1_uri(uri: str) -> str:
    """The sha1 hex of a URI in either form (see :func:`parse_uri`)."""
    return parse_uri(uri).sha1


def _parse_sha1_form(uri: str) -> FileUri:
    hash_part, _, query = uri[len("sha1://") :].partition("?")
    if not is_sha1_hex(hash_part):
        raise InvalidUriError(
            f"invalid sha1 in URI {uri!r}: expected 40 lowercase hexadecimal characters"
        )
    labels = parse_qs(query).get("label") if query else None
    return FileUri(hash_part, None, labels[0] if labels else None)


def _parse_kachery_form(uri: str) -> FileUri:
    parts = uri.split(":", 4)
    if len(parts) < 4:
        raise InvalidUriError(f"not a kachery URI: {uri!r}; {_EXPECTED}")
    _, zone, alg, hash_part = parts[:4]
    if not ZONE_NAME.fullmatch(zone):
        raise InvalidUriError(
            f"invalid zone {zone!r} in URI {uri!r}: use letters, digits, '.', '_', '-'"
        )
    if alg != "sha1":
        raise InvalidUriError(f"unsupported hash algorithm {alg!r} in URI {uri!r}: only sha1")
    if not is_sha1_hex(hash_part):
        raise InvalidUriError(
            f"invalid sha1 in URI {uri!r}: expected 40 lowercase hexadecimal characters"
        )
    label = unquote(parts[4]) if len(parts) == 5 and parts[4] else None
    return FileUri(hash_part, zone, label)


def sha1_uri(sha1: str, label: str | None = None) -> str:
    """``sha1://<sha1>[?label=…]`` for a validated hash."""
    uri = "sha1://" + ensure_sha1_hex(sha1)
    return uri if label is None else f"{uri}?label={quote(label)}"


def kachery_uri(sha1: str, zone: str, label: str | None = None) -> str:
    """``kachery:<zone>:sha1:<sha1>[:label]``, as kachery 2.x writes it."""
    if not isinstance(zone, str) or not ZONE_NAME.fullmatch(zone):
        raise InvalidUriError(f"invalid zone {zone!r}: use letters, digits, '.', '_', '-'")
    uri = f"kachery:{zone}:sha1:{ensure_sha1_hex(sha1)}"
    return uri if label is None else f"{uri}:{quote(label, safe='/')}"


def sha1_path_parts(sha1: str) -> tuple[str, str, str, str]:
    """The ``ab/cd/ef/<sha1>`` components kachery-cloud uses for stores and object keys."""
    h = ensure_sha1_hex(sha1)
    return h[0:2], h[2:4], h[4:6], h
