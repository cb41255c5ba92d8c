import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kachery_resource.errors import FileChangedError, IntegrityError, StoreError
from kachery_resource.hashing import sha1_of_file
from kachery_resource.store import LocalStore, default_store_dir


def _kachery_cloud(kc_dir: Path, code: str) -> str:
    """Run ``code`` with the real kachery-cloud 0.4.10 in a fresh process."""
    env = {**os.environ, "KACHERY_CLOUD_DIR": str(kc_dir)}
    out = subprocess.run([sys.executable, "-c", "import kachery_cloud as kcl\n" + code],
                         env=env, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


def test_sha1_of_file_streams(tmp_path: Path) -> None:
    p = tmp_path / "f"
    data = os.urandom(3 * 1024 * 1024 + 7)
    p.write_bytes(data)
    assert sha1_of_file(p, chunk_size=4096) == (hashlib.sha1(data).hexdigest(), len(data))


def test_default_store_dir() -> None:
    assert default_store_dir({"KACHERY_CLOUD_DIR": "/x/y"}) == Path("/x/y")
    assert default_store_dir({}) == Path.home() / ".kachery-cloud"


def test_kachery_cloud_reads_our_link_and_copy(tmp_path: Path, kc_dir: Path) -> None:
    big = tmp_path / "big file ü.bin"
    big.write_bytes(os.urandom(1_500_000))
    small = tmp_path / "small.txt"
    small.write_bytes(b"hello")
    store = LocalStore(kc_dir)
    big_sha1 = store.link(big)
    small_sha1 = store.store_copy(small)
    assert store.hash_cache_path(big).exists()  # big files share kachery-cloud's hash cache
    out = _kachery_cloud(kc_dir, f"print(kcl.load_file('sha1://{big_sha1}', local_only=True))\n"
                                 f"print(kcl.load_file('sha1://{small_sha1}', local_only=True))")
    assert out.splitlines() == [str(big), str(store.copy_path(small_sha1))]


def test_we_read_kachery_cloud_link_and_copy(tmp_path: Path, kc_dir: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1_200_000))
    small = tmp_path / "small.txt"
    small.write_bytes(b"hi there")
    out = _kachery_cloud(kc_dir, f"print(kcl.link_file({str(big)!r}))\n"
                                 f"print(kcl.store_file_local({str(small)!r}))")
    big_uri, small_uri = out.splitlines()
    store = LocalStore(kc_dir)
    big_sha1, small_sha1 = big_uri[7:], small_uri[7:]
    found = store.resolve(big_sha1)
    assert found is not None and found.linked and found.path == big
    found = store.resolve(small_sha1)
    assert found is not None and not found.linked
    # the hash cache kachery-cloud wrote is used by us: same answer, no re-hash needed
    record = json.loads(store.hash_cache_path(big).read_text())
    assert record["sha1"] == big_sha1 == store.compute_sha1(big)


def test_resolve_missing_and_deleted(tmp_path: Path, kc_dir: Path) -> None:
    store = LocalStore(kc_dir)
    assert store.resolve("0" * 40) is None
    f = tmp_path / "gone.txt"
    f.write_bytes(b"soon gone")
    sha1 = store.link(f)
    f.unlink()
    assert store.resolve(sha1) is None


def test_linked_file_rewritten_same_size_and_mtime_is_left_to_the_uploader(tmp_path: Path, kc_dir: Path) -> None:
    # Size and mtime match the record, so only hashing the bytes can tell: resolve hands the
    # file out and the uploader's one-pass hash (and the gateway's check) must refuse it.
    store = LocalStore(kc_dir)
    f = tmp_path / "data.bin"
    f.write_bytes(b"A" * 100)
    sha1 = store.link(f)
    st = f.stat()
    f.write_bytes(b"B" * 100)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    found = store.resolve(sha1)
    assert found is not None and sha1_of_file(found.path)[0] != sha1


def test_linked_file_new_bytes_and_new_mtime_is_refused(tmp_path: Path, kc_dir: Path) -> None:
    store = LocalStore(kc_dir)
    f = tmp_path / "data.bin"
    f.write_bytes(b"A" * 100)
    sha1 = store.link(f)
    st = f.stat()
    f.write_bytes(b"B" * 100)
    os.utime(f, (st.st_atime, st.st_mtime + 10))
    with pytest.raises(FileChangedError, match="no longer has sha1"):
        store.resolve(sha1)


def test_linked_file_touched_but_same_bytes_is_accepted(tmp_path: Path, kc_dir: Path) -> None:
    store = LocalStore(kc_dir)
    f = tmp_path / "data.bin"
    f.write_bytes(b"same")
    sha1 = store.link(f)
    st = f.stat()
    os.utime(f, (st.st_atime, st.st_mtime + 5))
    found = store.resolve(sha1)
    assert found is not None and found.mtime == st.st_mtime + 5
    assert store.read_link_record(sha1)["mtime"] == st.st_mtime + 5  # type: ignore[index]


def test_linked_file_size_change_is_refused(tmp_path: Path, kc_dir: Path) -> None:
    store = LocalStore(kc_dir)
    f = tmp_path / "data.bin"
    f.write_bytes(b"1234")
    sha1 = store.link(f)
    f.write_bytes(b"12345")
    with pytest.raises(FileChangedError, match="size"):
        store.resolve(sha1)


def test_add_verified(kc_dir: Path) -> None:
    store = LocalStore(kc_dir)
    data = b"payload"
    sha1 = hashlib.sha1(data).hexdigest()
    path = store.add_verified(sha1, [data[:3], data[3:]])
    assert path.read_bytes() == data
    with pytest.raises(IntegrityError, match="nothing was cached"):
        store.add_verified("0" * 40, [data])
    assert not store.copy_path("0" * 40).exists()
    assert list(store.copy_path("0" * 40).parent.iterdir()) == []


def test_link_refuses_directories(tmp_path: Path, kc_dir: Path) -> None:
    with pytest.raises(StoreError, match="not a regular file"):
        LocalStore(kc_dir).link(tmp_path)
