"""A file that is only on the data owner's machine: ``open()`` asks the resource for it
(today the whole file), then reads ranges from the bucket. Real gateway, proxy, daemon."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

import kachery_resource
from kachery_resource.demo import Stack

from .conftest import blob


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, dict[str, str]]]:
    """One gateway + proxy + daemon for the module, sharing two linked files."""
    tmp_path = tmp_path_factory.mktemp("stack")
    share = tmp_path / "share"
    share.mkdir()
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        h5.create_group("acquisition").create_dataset(
            "traces", data=np.arange(200000, dtype="i4").reshape(-1, 8), chunks=(1000, 8))
    (share / "rec.h5").write_bytes(buffer.getvalue())
    (share / "plain.bin").write_bytes(blob(300 * 1024, seed=9))
    running = Stack(tmp_path / "stack", lambda text: None)
    try:
        lines = running.start(share)
        uris = {Path(line.split()[0]).name: line.split()[-1] for line in lines}
        yield running, uris
    finally:
        running.close()


def test_open_waits_for_the_resource_then_reads_ranges(stack: tuple[Stack, dict[str, str]],
                                                       tmp_path: Path) -> None:
    running, uris = stack
    settings = running.client_settings(tmp_path / "remote")
    with kachery_resource.open(uris["rec.h5"], settings=settings, timeout=60) as f, \
            h5py.File(f, "r") as h5:
        np.testing.assert_array_equal(h5["acquisition/traces"][5000:5010],
                                      np.arange(40000, 40080, dtype="i4").reshape(-1, 8))
    with kachery_resource.open(uris["plain.bin"], settings=settings, timeout=60) as f:
        assert f.read() == blob(300 * 1024, seed=9) and f.verified is True
    assert not any((tmp_path / "remote").rglob("sha1/*/*/*/*"))  # nothing was downloaded whole


def test_a_file_the_resource_lacks(stack: tuple[Stack, dict[str, str]], tmp_path: Path) -> None:
    running, _ = stack
    settings = running.client_settings(tmp_path / "remote")
    with pytest.raises(kachery_resource.FileNotFoundOnResource, match="nor on the resource"):
        kachery_resource.open("sha1://" + "1" * 40, settings=settings, timeout=30)
