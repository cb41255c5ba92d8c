"""Ed25519 client keys and payload signatures, byte-compatible with kachery-cloud 0.4.10.

A client id is the raw 32-byte public key in lowercase hex. A payload is signed by taking
the sha1 digest of its canonical JSON (sorted keys, no spaces, ASCII) and signing those
20 raw bytes with Ed25519.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import KeysError

PUBLIC_KEY_PREFIX = "302a300506032b6570032100"
PRIVATE_KEY_PREFIX = "302e020100300506032b657004220420"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")


def canonical_json(payload: Any) -> str:
    """The exact JSON text kachery-cloud signs: sorted keys, no whitespace, ASCII only."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _digest(payload: Any) -> bytes:
    return hashlib.sha1(canonical_json(payload).encode("utf-8")).digest()


def is_client_id(value: object) -> bool:
    """Answer whether ``value`` looks like a client id (64 lowercase hex characters)."""
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def is_signature_hex(value: object) -> bool:
    """Answer whether ``value`` looks like an Ed25519 signature (128 lowercase hex)."""
    return isinstance(value, str) and _HEX128.fullmatch(value) is not None


def verify_signature(payload: Any, client_id: str, signature: str) -> bool:
    """Answer whether ``signature`` is ``client_id``'s signature of ``payload``."""
    if not (is_client_id(client_id) and is_signature_hex(signature)):
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(client_id))
        key.verify(bytes.fromhex(signature), _digest(payload))
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class ClientKeys:
    """A kachery-cloud client identity: the public id and the 32-byte private seed."""

    client_id: str
    private_key_hex: str

    @classmethod
    def generate(cls) -> ClientKeys:
        """Make a fresh random key pair."""
        return cls.from_private_hex(
            Ed25519PrivateKey.generate()
            .private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            .hex()
        )

    @classmethod
    def from_private_hex(cls, private_key_hex: str) -> ClientKeys:
        """Derive the client id from a 64-hex-character private seed."""
        try:
            seed = bytes.fromhex(private_key_hex)
            key = Ed25519PrivateKey.from_private_bytes(seed)
        except ValueError as exc:
            raise KeysError(
                "the private key is not 32 bytes of hex; check KACHERY_CLOUD_PRIVATE_KEY "
                "or private.pem"
            ) from exc
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return cls(client_id=public.hex(), private_key_hex=private_key_hex.lower())

    def sign(self, payload: Any) -> str:
        """Sign ``payload`` exactly as kachery-cloud does; returns 128 hex characters."""
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(self.private_key_hex))
        return key.sign(_digest(payload)).hex()

    def public_pem(self) -> str:
        """The public key in kachery-cloud's one-line PEM form (no trailing newline)."""
        return _pem("PUBLIC KEY", PUBLIC_KEY_PREFIX + self.client_id)

    def private_pem(self) -> str:
        """The private key in kachery-cloud's one-line PEM form (no trailing newline)."""
        return _pem("PRIVATE KEY", PRIVATE_KEY_PREFIX + self.private_key_hex)


def _pem(label: str, der_hex: str) -> str:
    body = base64.b64encode(bytes.fromhex(der_hex)).decode()
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"


def _pem_to_hex(text: str, label: str, prefix: str, path: Path) -> str:
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 3 or lines[0] != f"-----BEGIN {label}-----" or lines[-1] != f"-----END {label}-----":
        raise KeysError(f"{path} is not an Ed25519 {label.lower()} in PEM format")
    try:
        der = base64.b64decode("".join(lines[1:-1]), validate=True).hex()
    except ValueError as exc:
        raise KeysError(f"{path} holds invalid base64") from exc
    if not der.startswith(prefix) or len(der) != len(prefix) + 64:
        raise KeysError(f"{path} is not an Ed25519 key of the kind kachery-cloud writes")
    return der[len(prefix) :]


def load_client_keys(kachery_cloud_dir: Path, env: dict[str, str] | None = None) -> ClientKeys | None:
    """Read keys from ``KACHERY_CLOUD_CLIENT_ID``/``KACHERY_CLOUD_PRIVATE_KEY`` or the PEM files.

    Returns None when neither is present; raises KeysError when they are malformed.
    """
    env = dict(os.environ) if env is None else env
    client_id = env.get("KACHERY_CLOUD_CLIENT_ID")
    private_hex = env.get("KACHERY_CLOUD_PRIVATE_KEY")
    if client_id is not None or private_hex is not None:
        if not (client_id and private_hex):
            raise KeysError(
                "set both KACHERY_CLOUD_CLIENT_ID and KACHERY_CLOUD_PRIVATE_KEY, or neither"
            )
        keys = ClientKeys.from_private_hex(private_hex)
        if keys.client_id != client_id.lower():
            raise KeysError(
                "KACHERY_CLOUD_CLIENT_ID does not match KACHERY_CLOUD_PRIVATE_KEY; "
                "the id must be the public key of that private key"
            )
        return keys
    private_path = kachery_cloud_dir / "private.pem"
    public_path = kachery_cloud_dir / "public.pem"
    if not private_path.exists():
        return None
    try:
        private_hex = _pem_to_hex(private_path.read_text(), "PRIVATE KEY", PRIVATE_KEY_PREFIX, private_path)
        keys = ClientKeys.from_private_hex(private_hex)
        if public_path.exists():
            public_hex = _pem_to_hex(public_path.read_text(), "PUBLIC KEY", PUBLIC_KEY_PREFIX, public_path)
            if public_hex != keys.client_id:
                raise KeysError(f"{public_path} does not belong to {private_path}")
    except OSError as exc:
        raise KeysError(f"cannot read client keys in {kachery_cloud_dir}: {exc}") from exc
    return keys


def ensure_client_keys(kachery_cloud_dir: Path) -> tuple[ClientKeys, bool]:
    """Return the keys in ``kachery_cloud_dir``, creating them if missing; bool = created."""
    keys = load_client_keys(kachery_cloud_dir)
    if keys is not None:
        return keys, False
    keys = ClientKeys.generate()
    kachery_cloud_dir.mkdir(parents=True, exist_ok=True)
    (kachery_cloud_dir / "public.pem").write_text(keys.public_pem())
    private_path = kachery_cloud_dir / "private.pem"
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(keys.private_pem())
    return keys, True


def signed_envelope(keys: ClientKeys, payload: dict[str, Any]) -> dict[str, Any]:
    """The body of a gateway call: ``payload`` stamped with the time, signed by ``keys``."""
    import time

    stamped = {**payload, "timestamp": int(time.time() * 1000)}
    return {"payload": stamped, "fromClientId": keys.client_id, "signature": keys.sign(stamped)}
