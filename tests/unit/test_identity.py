from pathlib import Path

import pytest

from kachery_resource.errors import KeysError
from kachery_resource.identity import (
    ClientKeys,
    canonical_json,
    ensure_client_keys,
    load_client_keys,
    signed_envelope,
    verify_signature,
)

# The test vector from kachery-cloud-0.4.10.md §2, produced by the client's own _sign_message.
SEED = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"
CLIENT_ID = "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664"
PAYLOAD = {"type": "findFile", "hashAlg": "sha1", "hash": "da39a3ee5e6b4b0d3255bfef95601890afd80709",
           "zone": "default", "timestamp": 1700000000000}
SIGNATURE = ("1353ba5b66925542309d17f3b318cd4659adb4b783e256da32196254ae5e4e71"
             "2db2b1fc4724bc5f2447f09cac755e54a2290ccc7e964c03ebd30b45c376e808")
ADD_CLIENT_SIGNATURE = ("49c94f37296235ffff99d855b07317c333a8d1afa8b1b8511fd4f75c0e7efefc"
                        "41138f48fb7fe3549942e6c11f49300b71a9cb3a516c2bfe07792e94e8560503")


def test_reference_vector() -> None:
    keys = ClientKeys.from_private_hex(SEED)
    assert keys.client_id == CLIENT_ID
    assert canonical_json(PAYLOAD) == (
        '{"hash":"da39a3ee5e6b4b0d3255bfef95601890afd80709","hashAlg":"sha1",'
        '"timestamp":1700000000000,"type":"findFile","zone":"default"}'
    )
    assert keys.sign(PAYLOAD) == SIGNATURE
    assert keys.sign({"type": "addClient"}) == ADD_CLIENT_SIGNATURE
    assert verify_signature(PAYLOAD, CLIENT_ID, SIGNATURE)


def test_tampering_fails_verification() -> None:
    assert not verify_signature({**PAYLOAD, "zone": "other"}, CLIENT_ID, SIGNATURE)
    assert not verify_signature(PAYLOAD, CLIENT_ID, "0" * 128)
    assert not verify_signature(PAYLOAD, "zz", SIGNATURE)
    assert not verify_signature(PAYLOAD, CLIENT_ID, SIGNATURE.upper())


def test_non_ascii_is_escaped_like_simplejson() -> None:
    assert canonical_json({"zone": "zürich"}) == '{"zone":"z\\u00fcrich"}'


def test_signed_envelope_verifies() -> None:
    keys = ClientKeys.generate()
    env = signed_envelope(keys, {"type": "findFile", "zone": "default"})
    assert set(env) == {"payload", "fromClientId", "signature"}
    assert isinstance(env["payload"]["timestamp"], int)
    assert verify_signature(env["payload"], keys.client_id, env["signature"])


def test_pem_files_round_trip(tmp_path: Path) -> None:
    keys, created = ensure_client_keys(tmp_path)
    assert created
    assert (tmp_path / "private.pem").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "private.pem").read_text().endswith("\n")
    again, created = ensure_client_keys(tmp_path)
    assert not created and again == keys
    assert load_client_keys(tmp_path, env={}) == keys


def test_reads_openssl_style_pem_with_trailing_newline(tmp_path: Path) -> None:
    keys = ClientKeys.from_private_hex(SEED)
    (tmp_path / "private.pem").write_text(keys.private_pem() + "\n")
    (tmp_path / "public.pem").write_text(keys.public_pem() + "\n")
    assert load_client_keys(tmp_path, env={}) == keys


def test_env_keys_take_priority(tmp_path: Path) -> None:
    ensure_client_keys(tmp_path)
    env = {"KACHERY_CLOUD_CLIENT_ID": CLIENT_ID, "KACHERY_CLOUD_PRIVATE_KEY": SEED}
    assert load_client_keys(tmp_path, env=env) == ClientKeys.from_private_hex(SEED)


def test_bad_keys_say_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(KeysError, match="both"):
        load_client_keys(tmp_path, env={"KACHERY_CLOUD_CLIENT_ID": CLIENT_ID})
    with pytest.raises(KeysError, match="does not match"):
        load_client_keys(tmp_path, env={"KACHERY_CLOUD_CLIENT_ID": "0" * 64,
                                        "KACHERY_CLOUD_PRIVATE_KEY": SEED})
    (tmp_path / "private.pem").write_text("garbage")
    with pytest.raises(KeysError, match="PEM"):
        load_client_keys(tmp_path, env={})


def test_no_keys_is_none(tmp_path: Path) -> None:
    assert load_client_keys(tmp_path, env={}) is None
