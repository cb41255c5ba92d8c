"""An interrupted download resumes with a Range instead of starting over."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from kachery_resource import GatewayError, IntegrityError, StoreError
from kachery_resource.client import ClientSettings, load_file, stream_file
from kachery_resource.client.download import partial_path
from kachery_resource.store import LocalStore

from .fakes import FakeState, sha1

MIB = 2**20


def test_a_dropped_connection_resumes_where_it_broke(
    fake: tuple[str, FakeState], settings: ClientSettings
) -> None:
    data = os.urandom(3 * MIB + 5)
    fake[1].bucket[sha1(data)] = data
    fake[1].cut_after[sha1(data)] = [MIB + 3]
    assert Path(load_file(f"sha1://{sha1(data)}", settings=settings)).read_bytes() == data
    first, second = fake[1].ranges
    assert first is None and second is not None
    # what arrived before the break is kept (less the read in flight, at most 64 KiB)
    assert MIB + 3 - 64 * 1024 <= int(second.removeprefix("bytes=").rstrip("-")) <= MIB + 3
    assert not partial_path(LocalStore(settings.store_dir), sha1(data)).exists()


def test_the_next_run_resumes_what_a_failed_run_kept(
    fake: tuple[str, FakeState], settings: ClientSettings
) -> None:
    data = os.urandom(MIB)
    h = sha1(data)
    fake[1].bucket[h] = data
    fake[1].cut_after[h] = [100_000] * 4
    with pytest.raises(GatewayError, match=r"broke off 4 times .*run the command again to resume"):
        load_file(f"sha1://{h}", settings=settings)
    partial = partial_path(LocalStore(settings.store_dir), h)
    kept = partial.read_bytes()
    assert 100_000 < len(kept) <= 400_000 and data.startswith(kept)
    seen: list[bytes] = []
    stream_file(f"sha1://{h}", seen.append, settings=settings)
    assert fake[1].ranges[-1] == f"bytes={len(kept)}-"
    assert b"".join(seen) == data  # the kept part is passed on too, once
    assert LocalStore(settings.store_dir).copy_path(h).read_bytes() == data
    assert not partial.exists()


def test_a_wrong_partial_file_is_dropped_and_the_next_run_starts_over(
    fake: tuple[str, FakeState], settings: ClientSettings
) -> None:
    data = os.urandom(200_000)
    h = sha1(data)
    fake[1].bucket[h] = data
    partial = partial_path(LocalStore(settings.store_dir), h)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"not the start of the file")
    with pytest.raises(IntegrityError, match="nothing was cached"):
        load_file(f"sha1://{h}", settings=settings)
    assert not partial.exists()
    assert Path(load_file(f"sha1://{h}", settings=settings)).read_bytes() == data
    assert fake[1].ranges == ["bytes=25-", None]


@pytest.mark.parametrize("kept", [1000, 200_000, 300_000])
def test_a_bucket_without_ranges_or_a_partial_too_long_restarts(
    fake: tuple[str, FakeState], settings: ClientSettings, kept: int
) -> None:
    data = os.urandom(200_000)
    h = sha1(data)
    fake[1].bucket[h] = data
    fake[1].serve_ranges = kept != 1000
    partial = partial_path(LocalStore(settings.store_dir), h)
    partial.parent.mkdir(parents=True)
    partial.write_bytes((data + b"x" * 100_000)[:kept])
    seen: list[bytes] = []
    stream_file(f"sha1://{h}", seen.append, settings=settings)
    assert b"".join(seen) == data
    assert LocalStore(settings.store_dir).copy_path(h).read_bytes() == data


def test_a_store_that_cannot_be_written_is_a_clear_error(
    fake: tuple[str, FakeState], settings: ClientSettings, tmp_path: Path
) -> None:
    data = b"nowhere to put it"
    fake[1].bucket[sha1(data)] = data
    not_a_dir = tmp_path / "a file"
    not_a_dir.write_text("x")
    with pytest.raises(StoreError, match="cannot write the download of sha1://"):
        load_file(f"sha1://{sha1(data)}", settings=dataclasses.replace(settings, store_dir=not_a_dir))


def test_a_closed_sink_is_not_a_store_error(
    fake: tuple[str, FakeState], settings: ClientSettings
) -> None:
    data = os.urandom(300_000)
    fake[1].bucket[sha1(data)] = data

    def closed(chunk: bytes) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(BrokenPipeError):
        stream_file(f"sha1://{sha1(data)}", closed, settings=settings)
    # what arrived is kept for the next run
    assert partial_path(LocalStore(settings.store_dir), sha1(data)).stat().st_size > 0
