"""`kachery-resource link`: records kachery-cloud reads, parallel hashing, skip unchanged."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from kachery_resource.cli import cli
from kachery_resource.daemon.link import link_paths
from kachery_resource.store import LocalStore


def make_tree(root: Path, n: int) -> dict[Path, str]:
    files = {}
    for i in range(n):
        p = root / f"d{i % 3}" / f"file {i} é.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        data = f"content {i}".encode()
        p.write_bytes(data)
        files[p] = hashlib.sha1(data).hexdigest()
    return files


def test_link_tree_writes_kachery_cloud_records_and_skips_unchanged(tmp_path: Path,
                                                                    kc_dir: Path) -> None:
    files = make_tree(tmp_path / "data", 30)
    store = LocalStore(kc_dir)
    first = link_paths([tmp_path / "data"], store, workers=4)
    assert not first.errors and first.hashed == 30
    for path, sha1 in files.items():
        record = json.loads(store.link_record_path(sha1).read_text())
        assert record == {"path": str(path), "size": path.stat().st_size,
                          "mtime": path.stat().st_mtime, "sha1": sha1}
        assert store.resolve(sha1) is not None
    second = link_paths([tmp_path / "data"], store)
    assert second.hashed == 0 and len(second.files) == 30
    assert {f.sha1 for f in second.files} == set(files.values())
    # change one file: only it is hashed again
    changed = next(iter(files))
    changed.write_bytes(b"new bytes, new size")
    third = link_paths([tmp_path / "data"], store)
    assert third.hashed == 1
    assert {f.sha1 for f in third.files if f.path == str(changed)} == {
        hashlib.sha1(b"new bytes, new size").hexdigest()}
    # a deleted record is noticed and written again
    some_sha1 = files[list(files)[1]]
    store.link_record_path(some_sha1).unlink()
    assert link_paths([tmp_path / "data"], store).hashed == 1
    assert store.link_record_path(some_sha1).exists()


@pytest.mark.parametrize("fmt", ["tsv", "jsonl"])
def test_link_cli_manifest(tmp_path: Path, kc_dir: Path, fmt: str) -> None:
    files = make_tree(tmp_path / "data", 5)
    single = tmp_path / "single file.txt"
    single.write_text("x")
    manifest = tmp_path / f"m.{fmt}"
    result = CliRunner().invoke(
        cli, ["link", str(tmp_path / "data"), str(single), "--manifest", str(manifest),
              "--format", fmt], env={"KACHERY_CLOUD_DIR": str(kc_dir)})
    assert result.exit_code == 0, result.output
    size = sum(p.stat().st_size for p in [*files, single])
    assert f"linked 6 files, {size} B (6 hashed: {size} B, 0 unchanged, 0 failed)" in result.output
    lines = manifest.read_text().splitlines()
    expected = {str(p): f"sha1://{h}" for p, h in files.items()}
    expected[str(single)] = f"sha1://{hashlib.sha1(b'x').hexdigest()}"
    if fmt == "tsv":
        got = dict(line.split("\t") for line in lines)
    else:
        got = {o["path"]: o["uri"] for o in map(json.loads, lines)}
    assert got == expected
    # to stdout when no --manifest
    result = CliRunner().invoke(cli, ["link", str(single)], env={"KACHERY_CLOUD_DIR": str(kc_dir)})
    assert result.exit_code == 0
    assert f"{single}\tsha1://" in result.output and "1 unchanged" in result.output


def test_link_records_are_read_by_kachery_cloud(tmp_path: Path, kc_dir: Path) -> None:
    import subprocess
    import sys

    files = make_tree(tmp_path / "data", 2)
    link_paths([tmp_path / "data"], LocalStore(kc_dir))
    path, sha1 = next(iter(files.items()))
    code = ("import kachery_cloud as kcl, sys; "
            f"print(kcl.load_file('sha1://{sha1}', local_only=True))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "KACHERY_CLOUD_DIR": str(kc_dir)}, timeout=60)
    assert out.stdout.strip() == str(path), out.stderr


def test_link_manifest_that_cannot_be_written_fails_before_hashing(tmp_path: Path,
                                                                   kc_dir: Path) -> None:
    files = make_tree(tmp_path / "data", 3)
    result = CliRunner().invoke(cli, ["link", str(tmp_path / "data"), "--manifest",
                                      str(tmp_path / "nowhere" / "m.tsv")],
                                env={"KACHERY_CLOUD_DIR": str(kc_dir)})
    assert result.exit_code == 2
    assert f"Invalid value for '--manifest': the directory {tmp_path / 'nowhere'} does not exist" \
        in result.output
    assert "linked" not in result.output  # nothing was hashed or linked
    assert not any(LocalStore(kc_dir).read_link_record(sha1) for sha1 in files.values())


def test_link_manifest_inside_the_tree_is_not_linked(tmp_path: Path, kc_dir: Path) -> None:
    files = make_tree(tmp_path / "data", 3)
    manifest = tmp_path / "data" / "manifest.tsv"
    result = CliRunner().invoke(cli, ["link", str(tmp_path / "data"), "--manifest", str(manifest)],
                                env={"KACHERY_CLOUD_DIR": str(kc_dir)})
    assert result.exit_code == 0, result.output
    listed = dict(line.split("\t") for line in manifest.read_text().splitlines())
    assert listed == {str(p): f"sha1://{h}" for p, h in files.items()}  # not the manifest itself
    assert not list((tmp_path / "data").glob(".*partial"))


def test_unlink_removes_the_records_of_a_moved_tree(tmp_path: Path, kc_dir: Path) -> None:
    files = make_tree(tmp_path / "data", 4)
    keep = tmp_path / "keep.txt"
    keep.write_text("kept")
    env = {"KACHERY_CLOUD_DIR": str(kc_dir)}
    assert CliRunner().invoke(cli, ["link", str(tmp_path / "data"), str(keep)], env=env).exit_code == 0
    store = LocalStore(kc_dir)
    (tmp_path / "data").rename(tmp_path / "moved")  # the old path is gone
    result = CliRunner().invoke(cli, ["unlink", str(tmp_path / "data")], env=env)
    assert result.exit_code == 0, result.output
    assert "unlinked 4 files" in result.output
    assert all(store.read_link_record(sha1) is None for sha1 in files.values())
    assert not any(store.has(sha1) for sha1 in files.values())  # no longer offered
    assert store.resolve(store.compute_sha1(keep)) is not None  # other links stay
    one = CliRunner().invoke(cli, ["unlink", str(keep)], env=env)
    assert one.exit_code == 0 and "unlinked 1 file\n" in one.output  # not "1 files"
    again = CliRunner().invoke(cli, ["unlink", str(keep)], env=env)
    assert again.exit_code == 1 and "nothing is linked at or under" in again.output
    # linking the moved tree again hashes it anew (the index forgot the old paths)
    relinked = CliRunner().invoke(cli, ["link", str(tmp_path / "moved")], env=env)
    assert "(4 hashed" in relinked.output


def test_link_reports_bytes_hashed_as_they_are(tmp_path: Path, kc_dir: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    seen: list[int] = []
    totals: list[tuple[int, int]] = []
    report = link_paths([big], LocalStore(kc_dir), on_bytes=seen.append,
                        on_total=lambda n, b: totals.append((n, b)))
    assert totals == [(1, big.stat().st_size)]
    assert len(seen) >= 3 and sum(seen) == big.stat().st_size  # block by block, not at the end
    assert report.summary().startswith("linked 1 file, 3.0 MiB (1 hashed: 3.0 MiB")


def test_link_writes_kachery_uris_that_load_takes(tmp_path: Path, kc_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from kachery_resource.uri import parse_uri

    single = tmp_path / "rec.bin"
    single.write_bytes(b"kachery form")
    monkeypatch.chdir(tmp_path)  # no kachery-resource.yaml here: the zone is KACHERY_ZONE's
    result = CliRunner().invoke(cli, ["link", str(single), "--uris", "kachery"],
                                env={"KACHERY_CLOUD_DIR": str(kc_dir), "KACHERY_ZONE": "lab.z"})
    assert result.exit_code == 0, result.output
    uri = result.stdout.splitlines()[0].split("\t")[1]
    assert uri == f"kachery:lab.z:sha1:{hashlib.sha1(b'kachery form').hexdigest()}"
    parsed = parse_uri(uri)
    assert (parsed.zone, parsed.sha1) == ("lab.z", hashlib.sha1(b"kachery form").hexdigest())
