"""Object keys inside a storage, and their validation (no key ever names a path outside it).

Layout under a zone's prefix ``P`` (``P/`` is omitted when the prefix is empty)::

    P/sha1/ab/cd/ef/<sha1>               content, visible only after verification
    P/staging/<sha1>/<upload id>         single-PUT uploads waiting for finalize (also a
                                         chunk list or a chunk, keyed by the sha1 of its bytes)
    P/chunks/<sha1>/<chunk size>/list.json   a file's signed chunk list, checked
    P/chunks/<sha1>/<chunk size>/<index>     its chunks (6-digit index), checked
    P/chunks/<sha1>/<chunk size>/checked     marker: the list was checked against the whole file
    P/multipart/<sha1>/<upload id>/...   multipart uploads waiting for complete
    P/clients/<client id>                client records (JSON)
    P/users/<sha256 of the API key>      user records (JSON; the key itself is never stored)
    P/resources/<sha1 of resource URL>   resource announcements (JSON)
"""

from __future__ import annotations

import re
import secrets

from ..uri import is_sha1_hex, sha1_path_parts
from .problems import bad_request

_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
MAX_KEY_LENGTH = 900


def is_safe_key(key: str) -> bool:
    """Answer whether ``key`` is a relative key of plain components (no ``..``, no dotfiles)."""
    if not key or len(key) > MAX_KEY_LENGTH:
        return False
    return all(_COMPONENT.fullmatch(part) and ".." not in part for part in key.split("/"))


def ensure_safe_key(key: str) -> str:
    """Return ``key`` if it is safe (see is_safe_key), else raise a 400."""
    if not is_safe_key(key):
        raise bad_request(
            "invalid_key",
            f"invalid object key {key[:200]!r}: keys are '/'-separated names of letters, "
            "digits, '.', '_' and '-' (no '..', no leading '.')",
        )
    return key


def ensure_safe_prefix(prefix: str) -> str:
    """Return a normalised prefix (no leading/trailing '/'); an empty prefix is allowed."""
    stripped = prefix.strip("/")
    if stripped and not is_safe_key(stripped):
        from ..errors import ConfigError

        raise ConfigError(f"invalid key prefix {prefix!r}: use names of letters, digits, '.', '_', '-'")
    return stripped


def join(prefix: str, *parts: str) -> str:
    """Join a (possibly empty) prefix and key parts with '/'."""
    return "/".join(p for p in (prefix, *parts) if p)


def content_key(prefix: str, sha1: str) -> str:
    """``<prefix>/sha1/ab/cd/ef/<sha1>``: where verified content lives."""
    return join(prefix, "sha1", *sha1_path_parts(sha1))


def new_upload_id() -> str:
    """A fresh random upload id (32 lowercase hex)."""
    return secrets.token_hex(16)


def is_upload_id(value: str) -> bool:
    """Answer whether ``value`` is an upload id we could have made."""
    return _UPLOAD_ID.fullmatch(value) is not None


def staging_key(prefix: str, sha1: str, upload_id: str) -> str:
    """``<prefix>/staging/<sha1>/<upload id>``: where a single-PUT upload lands first."""
    return join(prefix, "staging", sha1, upload_id)


def staging_root(prefix: str) -> str:
    """The prefix under which every staged single-PUT upload lives."""
    return join(prefix, "staging")


def multipart_root(prefix: str) -> str:
    """The prefix under which every multipart upload's parts live."""
    return join(prefix, "multipart")


def client_key(prefix: str, client_id: str) -> str:
    """``<prefix>/clients/<client id>``: one client record."""
    return join(prefix, "clients", client_id)


def clients_root(prefix: str) -> str:
    """The prefix of every client record."""
    return join(prefix, "clients")


def user_key(prefix: str, key_hash: str) -> str:
    """``<prefix>/users/<sha256 of the API key>``: one user record."""
    return join(prefix, "users", key_hash)


def users_root(prefix: str) -> str:
    """The prefix of every user record."""
    return join(prefix, "users")


def resources_root(prefix: str) -> str:
    """The prefix of every resource announcement."""
    return join(prefix, "resources")


def resource_key(prefix: str, resource_url: str) -> str:
    """``<prefix>/resources/<sha1 of the URL>``: one resource announcement."""
    import hashlib

    return join(prefix, "resources", hashlib.sha1(resource_url.encode()).hexdigest())


def multipart_key(prefix: str, sha1: str, upload_id: str) -> str:
    """``<prefix>/multipart/<sha1>/<upload id>``: the objectKey of a multipart upload."""
    return join(prefix, "multipart", sha1, upload_id)


def chunks_root(prefix: str) -> str:
    """The prefix under which every file's chunks live."""
    return join(prefix, "chunks")


def chunk_folder(prefix: str, sha1: str) -> str:
    """``<prefix>/chunks/<sha1>``: the chunk sets of one file, one folder per chunk size."""
    return join(prefix, "chunks", sha1)


def chunk_set(prefix: str, sha1: str, chunk_size: int) -> str:
    """``<prefix>/chunks/<sha1>/<chunk size>``: one chunk list, its chunks and its marker."""
    return join(prefix, "chunks", sha1, str(chunk_size))


def chunk_list_key(prefix: str, sha1: str, chunk_size: int) -> str:
    """Where the signed chunk list of ``sha1`` (at ``chunk_size``) is kept."""
    return join(chunk_set(prefix, sha1, chunk_size), "list.json")


def chunk_key(prefix: str, sha1: str, chunk_size: int, index: int) -> str:
    """Where chunk ``index`` of ``sha1`` is kept (6-digit zero-padded index)."""
    return join(chunk_set(prefix, sha1, chunk_size), f"{index:06d}")


def chunk_checked_key(prefix: str, sha1: str, chunk_size: int) -> str:
    """The marker written once the list was checked against the whole file."""
    return join(chunk_set(prefix, sha1, chunk_size), "checked")


def parse_staging_key(prefix: str, key: str, sha1: str, area: str = "staging") -> str:
    """Return the upload id of upload key ``key`` for ``sha1``, or raise a 400.

    The key must be exactly what initiateFileUpload (``area="staging"``; a store-verified
    upload's content key is handled before this) or initiateMultipartUpload
    (``area="multipart"``) returned for this hash and zone.
    """
    ensure_safe_key(key)
    expected_head = join(prefix, area, sha1) + "/"
    upload_id = key[len(expected_head) :] if key.startswith(expected_head) else ""
    if not (is_sha1_hex(sha1) and is_upload_id(upload_id)):
        raise bad_request(
            "object_key_mismatch",
            f"objectKey {key!r} does not belong to an upload of sha1 {sha1} in this zone; "
            "send back exactly the objectKey that initiateFileUpload returned",
        )
    return upload_id
