"""``sha1://`` URIs: the one strict parser every module uses."""

from __future__ import annotations

import re

from .errors import InvalidUriError

_SHA1 = re.compile(r"[0-9a-f]{40}")


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


def parse_sha1_uri(uri: str) -> str:
    """Return the sha1 hex of ``sha1://<40 hex>[?query]``; anything else is InvalidUriError.

    The query (``?label=…``, ``location=…``) is dropped; it never names a path we read.
    """
    if not isinstance(uri, str) or not uri.startswith("sha1://"):
        raise InvalidUriError(
            f"not a kachery URI: {uri!r}; expected sha1://<40 lowercase hex>, "
            "e.g. sha1://da39a3ee5e6b4b0d3255bfef95601890afd80709"
        )
    rest = uri[len("sha1://") :]
    hash_part = rest.split("?", 1)[0]
    if not is_sha1_hex(hash_part):
        raise InvalidUriError(
            f"invalid sha1 in URI {uri!r}: expected 40 lowercase hexadecimal characters"
        )
    return hash_part


def sha1_uri(sha1: str) -> str:
    """Return the canonical URI ``sha1://<sha1>`` for a validated hash."""
    return "sha1://" + ensure_sha1_hex(sha1)


def sha1_path_parts(sha1: str) -> tuple[str, str, str, str]:
    """The ``ab/cd/ef/<sha1>`` components kachery-cloud uses for stores and object keys."""
    h = ensure_sha1_hex(sha1)
    return h[0:2], h[2:4], h[4:6], h
