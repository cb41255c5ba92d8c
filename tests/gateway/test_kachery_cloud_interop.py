"""The released kachery-cloud 0.4.10 client against real gateway processes, both backends."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from kachery_resource.identity import ClientKeys

from ..servers import S3Server
from .conftest import GatewayProcess, run_kachery_cloud, stored_files

STORE = """
import json, kachery_cloud as kc
print(json.dumps({name: kc.store_file(name) for name in ["empty.bin", "small.bin", "big.bin"]}))
"""


LOAD_TEMPLATE = """
import hashlib, json, kachery_cloud as kc
uris = {uris!r}
out = {{}}
for name, uri in uris.items():
    info = kc.load_file_info(uri)
    path = kc.load_file(uri)
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    out[name] = {{"info": info, "sha1": h.hexdigest()}}
out["missing"] = kc.load_file_info("sha1://" + "0" * 40)
print(json.dumps(out))
"""


def make_files(directory: Path) -> dict[str, str]:
    """empty.bin, small.bin and a 100 MB big.bin; returns name → sha1."""
    (directory / "empty.bin").write_bytes(b"")
    (directory / "small.bin").write_bytes(b"hello kachery\n" * 10)
    h = hashlib.sha1()
    with open(directory / "big.bin", "wb") as f:
        for _ in range(100):
            chunk = os.urandom(1_000_000)
            h.update(chunk)
            f.write(chunk)
    return {
        "empty.bin": hashlib.sha1(b"").hexdigest(),
        "small.bin": hashlib.sha1(b"hello kachery\n" * 10).hexdigest(),
        "big.bin": h.hexdigest(),
    }


def round_trip(gateway: GatewayProcess, tmp_path: Path) -> dict[str, str]:
    """Store the three files as an uploader, then load them as an unregistered client."""
    work = tmp_path / "work"
    work.mkdir()
    expected = make_files(work)
    uploader = ClientKeys.generate()
    gateway.add_client(uploader, "--upload")
    uris = run_kachery_cloud(STORE, gateway.url, uploader, tmp_path / "kc-up", work)
    assert uris == {name: f"sha1://{sha1}" for name, sha1 in expected.items()}

    reader = ClientKeys.generate()  # never registered: the zone allows public download
    loaded = run_kachery_cloud(LOAD_TEMPLATE.format(uris=uris), gateway.url, reader,
                               tmp_path / "kc-down", work)
    for name, sha1 in expected.items():
        assert loaded[name]["sha1"] == sha1
        info = loaded[name]["info"]
        assert info["found"] is True
        assert info["size"] == (work / name).stat().st_size
        assert info["objectKey"].endswith(f"sha1/{sha1[:2]}/{sha1[2:4]}/{sha1[4:6]}/{sha1}")
        assert "url" not in info
    assert loaded["missing"] is None
    # Storing again is a no-op (alreadyExists), still the same URIs.
    assert run_kachery_cloud(STORE, gateway.url, uploader, tmp_path / "kc-up", work) == uris
    return expected


def test_kachery_cloud_round_trip_local(local_gateway: GatewayProcess, tmp_path: Path) -> None:
    expected = round_trip(local_gateway, tmp_path)
    root = tmp_path / "storage"
    files = stored_files(root)
    assert files == sorted(f"sha1/{h[:2]}/{h[2:4]}/{h[4:6]}/{h}" for h in expected.values())
    big = root / files[[f.endswith(expected["big.bin"]) for f in files].index(True)]
    assert big.stat().st_size == 100_000_000


def test_kachery_cloud_round_trip_s3(s3_gateway: GatewayProcess, s3_server: S3Server,
                                     tmp_path: Path) -> None:
    expected = round_trip(s3_gateway, tmp_path)
    s3 = s3_server.client()
    listed = s3.list_objects_v2(Bucket=s3_server.bucket, Prefix=tmp_path.name + "/")
    stored = sorted(o["Key"] for o in listed.get("Contents", []) if "/clients/" not in o["Key"])
    assert stored == sorted(f"{tmp_path.name}/sha1/{h[:2]}/{h[2:4]}/{h[4:6]}/{h}"
                            for h in expected.values())


def test_kachery_cloud_store_refused_without_upload_right(
        local_gateway: GatewayProcess, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("not allowed")
    script = ("import json, kachery_cloud as kc\n"
              "try:\n    kc.store_file('a.txt')\n    print(json.dumps({'error': None}))\n"
              "except Exception as e:\n    print(json.dumps({'error': str(e)}))\n")
    unregistered, download_only = ClientKeys.generate(), ClientKeys.generate()
    local_gateway.add_client(download_only, "--no-upload")
    for keys, code in [(unregistered, "client_not_registered"), (download_only, "upload_not_allowed")]:
        out = run_kachery_cloud(script, local_gateway.url, keys, tmp_path / "kc", tmp_path)
        assert out["error"] is not None
        assert "(403)" in out["error"] and code in out["error"]
    assert stored_files(tmp_path / "storage") == []
