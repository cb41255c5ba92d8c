"""``--dest`` / ``dest=`` is checked before anything is downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from kachery_resource import StoreError
from kachery_resource.client import ClientSettings, load_file

from .fakes import FakeState, sha1


@pytest.mark.parametrize(("dest", "message"), [
    ("missing dir/out.txt", r"directory .*missing dir does not exist; create it first"),
    ("missing dir/", "no such directory"),
    ("a file/out.txt", r"directory .*a file does not exist"),
    ("sub/dir", "is a directory"),
])
def test_a_bad_dest_fails_before_any_request(
    fake: tuple[str, FakeState], settings: ClientSettings, tmp_path: Path, dest: str, message: str
) -> None:
    (tmp_path / "a file").write_text("x")
    (tmp_path / "sub" / "dir" / "x").mkdir(parents=True)
    data = b"never fetched"
    fake[1].bucket[sha1(data)] = data
    uri = f"kachery:default:sha1:{sha1(data)}:dir"  # the label names a directory in sub/
    target = str(tmp_path / dest) + ("/" if dest.endswith("/") else "")
    if dest == "sub/dir":
        target = str(tmp_path / "sub")
    with pytest.raises(StoreError, match=message):
        load_file(uri, target, settings=settings)
    assert fake[1].gateway_requests == [] and fake[1].download_started_at == {}


def test_a_directory_dest_gets_the_label_or_the_sha1(
    fake: tuple[str, FakeState], settings: ClientSettings, tmp_path: Path
) -> None:
    data = b"named"
    fake[1].bucket[sha1(data)] = data
    got = load_file(f"sha1://{sha1(data)}?label=../up/a%20b.txt", tmp_path, settings=settings)
    assert got == str(tmp_path / "a b.txt") and Path(got).read_bytes() == data
    got = load_file(f"sha1://{sha1(data)}", tmp_path, settings=settings)
    assert got == str(tmp_path / sha1(data)) and Path(got).read_bytes() == data
