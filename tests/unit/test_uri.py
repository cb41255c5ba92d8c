import pytest
from hypothesis import given
from hypothesis import strategies as st

from kachery_resource.errors import InvalidUriError
from kachery_resource.uri import (
    ensure_sha1_hex,
    is_sha1_hex,
    parse_sha1_uri,
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
