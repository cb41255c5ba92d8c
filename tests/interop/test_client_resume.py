"""Our client resumes from a partial file with a Range the real buckets honour."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kachery_resource import IntegrityError
from kachery_resource.client import load_file, stream_file
from kachery_resource.client.download import partial_path
from kachery_resource.store import LocalStore
from kachery_resource.uri import kachery_uri, parse_uri

from .conftest import Stack


def test_resume_against_the_real_bucket(stack: Stack, tmp_path: Path) -> None:
    data = os.urandom(3 * 2**20 + 11)
    (tmp_path / "big.bin").write_bytes(data)
    [uri] = stack.host_add([("link", tmp_path / "big.bin")])
    sha1 = parse_uri(uri).sha1
    load_file(uri, settings=stack.our_settings("warm-up"), progress=False, timeout=120)  # in the bucket

    # a partial file with the right first MiB: only the rest is asked for, and it fits
    settings = stack.our_settings("resume")
    partial = partial_path(LocalStore(settings.store_dir), sha1)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[: 2**20])
    seen: list[bytes] = []
    stream_file(kachery_uri(sha1, "default"), seen.append, settings=settings)
    assert b"".join(seen) == data and not partial.exists()

    # a wrong first MiB shows the bucket served a range (a whole body would have fixed it)
    settings = stack.our_settings("wrong-prefix")
    partial = partial_path(LocalStore(settings.store_dir), sha1)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(bytes(2**20))
    with pytest.raises(IntegrityError):
        load_file(uri, settings=settings, progress=False)
    assert Path(load_file(uri, settings=settings, progress=False)).read_bytes() == data
