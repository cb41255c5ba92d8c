import pytest
from hypothesis import given
from hypothesis import strategies as st

from kachery_resource.errors import InvalidUriError
from kachery_resource.uri import (
    FileUri,
    ensure_sha1_hex,
    is_sha1_hex,
    kachery_uri,
    parse_sha1_uri,
    parse_uri,
    sha1_path_parts,
    sha1_uri,
)

H = "da39a3ee5e6b4b0d3255bfef95601890afd80709"


def test_plain_uri() -> None:
    assert parse_sha1_uri(f"sha1://{H}") == H


def test_query_is_dropped() -> None:
    assert parse_sha1_uri(f"sha1://{H}?label=a%20b.dat&location=/etc/passwd") == H


@pytest.mark.parametrize(
    "bad",
    [
        "",
        H,
        f"sha1:/{H}",
        f"SHA1://{H}",
        f"sha1://{H.upper()}",
        f"sha1://{H[:-1]}",
        f"sha1://{H}0",
        f"sha1://{H}/file.txt",
        "sha1://../../etc/passwd",
        f"sha256://{H}",
        f"/tmp/{H}",
        "kachery:",
        f"kachery:default:{H}",
        f"kachery::sha1:{H}",
        f"kachery:bad zone:sha1:{H}",
        f"kachery:../x:sha1:{H}",
        f"kachery:default:sha256:{H}",
        f"kachery:default:sha1:{H.upper()}",
        f"kachery:default:sha1:{H}?label=x",
        f"kachery:default:sha1:{H[:-1]}",
        f"kachery:default:sha1://{H}",
    ],
)
def test_rejects_everything_else(bad: str) -> None:
    with pytest.raises(InvalidUriError, match="sha1"):
        parse_sha1_uri(bad)


def test_non_string_rejected() -> None:
    with pytest.raises(InvalidUriError):
        parse_sha1_uri(None)  # type: ignore[arg-type]


@given(st.text())
def test_parse_never_returns_anything_but_hex(text: str) -> None:
    try:
        result = parse_sha1_uri(text)
    except InvalidUriError:
        return
    assert is_sha1_hex(result)


def test_helpers() -> None:
    assert sha1_uri(H) == f"sha1://{H}"
    assert sha1_path_parts(H) == ("da", "39", "a3", H)
    with pytest.raises(InvalidUriError):
        ensure_sha1_hex("../x")


def test_kachery_form() -> None:
    assert parse_uri(f"kachery:lab-1.zone:sha1:{H}") == FileUri(H, "lab-1.zone", None)
    assert parse_sha1_uri(f"kachery:default:sha1:{H}") == H


def test_labels_are_decoded_in_both_forms() -> None:
    assert parse_uri(f"kachery:z:sha1:{H}:a%20b%3Ac.dat") == FileUri(H, "z", "a b:c.dat")
    assert parse_uri(f"kachery:z:sha1:{H}:x:y") == FileUri(H, "z", "x:y")
    assert parse_uri(f"sha1://{H}?label=a%20b.dat") == FileUri(H, None, "a b.dat")
    assert parse_uri(f"sha1://{H}") == FileUri(H)


@given(st.text(st.characters(exclude_categories=("Cs",))), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True))
def test_formatters_round_trip(label: str, zone: str) -> None:
    assert parse_uri(kachery_uri(H, zone, label)) == FileUri(H, zone, label or None)
    assert parse_uri(sha1_uri(H, label)) == FileUri(H, None, label or None)


def test_formatter_matches_kachery() -> None:
    # what kachery 2.0.3's _form_uri(uri_type=2) writes for this label
    assert kachery_uri(H, "default", "dir/a b:c") == f"kachery:default:sha1:{H}:dir/a%20b%3Ac"
    assert kachery_uri(H, "default") == f"kachery:default:sha1:{H}"
    with pytest.raises(InvalidUriError):
        kachery_uri(H, "no zone")
