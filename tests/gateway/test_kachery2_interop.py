"""The released kachery 2.0.3 client (``import kachery``, ``kachery-store`` …) against real
gateway processes on both backends: users and keys made by the real CLI, private zones,
wrong keys, bad work tokens, tampered uploads, and files shared with kachery-cloud 0.4.10."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kachery_resource.identity import ClientKeys

from ..servers import BIN, cli_server
from .conftest import run_cli, run_kachery_cloud

ZONES = """
storage: {storage}
zones:
  default: {{}}
  private:
    prefix: private
    allowPublicDownload: false
"""


@dataclass
class Zone2:
    """A running gateway with a public zone ``default`` and a private zone ``private``."""

    url: str
    config: Path
    env: dict[str, str]
    work: Path

    def add_user(self, name: str, *flags: str) -> str:
        """``gateway users add NAME FLAGS`` with the real CLI; returns the printed key."""
        done = run_cli("users", "add", name, "--config", str(self.config), *flags, env=self.env)
        assert done.exit_code == 0, done.output
        return done.stdout.strip().splitlines()[-1]

    def kachery_env(self, key: str | None, kachery_dir: Path, zone: str | None = None) -> dict[str, str]:
        env = {**os.environ, "KACHERY_BASE_URL": self.url, "KACHERY_DIR": str(kachery_dir)}
        for name in ("KACHERY_API_KEY", "KACHERY_ZONE", "KACHERY_ALLOW_PUBLIC_ZONES",
                     "KACHERY_STORE_FILE_DIR"):
            env.pop(name, None)
        if key is not None:
            env["KACHERY_API_KEY"] = key
        if zone is not None:
            env["KACHERY_ZONE"] = zone
        return env

    def kachery(self, script: str, key: str | None, kachery_dir: Path,
                zone: str | None = None) -> Any:
        """Run ``script`` with kachery 2.0.3 in a fresh process (it reads KACHERY_BASE_URL
        at import); returns the JSON of its last line."""
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=self.kachery_env(key, kachery_dir, zone), cwd=self.work,
                              stdin=subprocess.DEVNULL, timeout=120)
        assert done.returncode == 0, f"kachery failed:\n{done.stdout}\n{done.stderr}"
        return json.loads(done.stdout.strip().splitlines()[-1])

    def command(self, args: list[str], key: str | None, kachery_dir: Path) -> subprocess.CompletedProcess[bytes]:
        """Run one of kachery 2.0.3's commands (``kachery-store`` …)."""
        return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, cwd=self.work,
                              env=self.kachery_env(key, kachery_dir), stdin=subprocess.DEVNULL,
                              timeout=120)


@pytest.fixture(scope="module", params=["local", "s3"])
def zone2(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zone2]:
    """One gateway per backend for the whole module (users differ per test)."""
    base = tmp_path_factory.mktemp(f"kachery2-{request.param}")
    env: dict[str, str] = {}
    storage = str(base / "storage")
    if request.param == "s3":
        s3 = request.getfixturevalue("s3_server")
        env = {**s3.env(), "AWS_ENDPOINT_URL": s3.endpoint}
        storage = f"s3://{s3.bucket}/{base.name}"
    config = base / "zones.yaml"
    config.write_text(ZONES.format(storage=storage))
    work = base / "work"
    work.mkdir()
    with cli_server(["gateway", "--port", "0", "--config", str(config)], env=env) as server:
        yield Zone2(server.url, config, env, work)


def sha1_of(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


STORE = """
import json, kachery as ka
uris = {name: ka.store_file(name) for name in ["empty.bin", "small.txt", "random.bin"]}
uris["json"] = ka.store_json({"a": [1, 2, 3], "b": "kachery 2"})
uris["labelled"] = ka.store_file("small.txt", label="small.txt")
print(json.dumps(uris))
"""

LOAD = """
import hashlib, json, kachery as ka
uris = json.loads({uris!r})
out = {{}}
for name in ["empty.bin", "small.txt", "random.bin", "labelled"]:
    info = ka.load_file_info(uris[name])
    path = ka.load_file(uris[name])
    out[name] = {{"info": info, "sha1": hashlib.sha1(open(path, "rb").read()).hexdigest()}}
out["json"] = ka.load_json(uris["json"])
out["missing"] = ka.load_file_info("kachery:default:sha1:" + "0" * 40)
out["missing_file"] = ka.load_file("sha1://" + "0" * 40)
print(json.dumps(out))
"""


def test_store_and_load(zone2: Zone2, tmp_path: Path) -> None:
    work = zone2.work
    (work / "empty.bin").write_bytes(b"")
    (work / "small.txt").write_text("hello from kachery 2\n" * 5)
    (work / "random.bin").write_bytes(os.urandom(1_500_000))
    names = ["empty.bin", "small.txt", "random.bin"]
    key = zone2.add_user("alice", "--upload")
    uris = zone2.kachery(STORE, key, tmp_path / "up")
    assert {n: uris[n] for n in names} == {n: f"kachery:default:sha1:{sha1_of(work / n)}" for n in names}
    assert uris["labelled"] == f"kachery:default:sha1:{sha1_of(work / 'small.txt')}:small.txt"
    # a reader without a key, with an empty local store
    loaded = zone2.kachery(LOAD.format(uris=json.dumps(uris)), None, tmp_path / "down")
    for name in [*names, "labelled"]:
        path = work / ("small.txt" if name == "labelled" else name)
        assert loaded[name]["sha1"] == sha1_of(path)
        info = loaded[name]["info"]
        assert info["found"] is True and info["size"] == path.stat().st_size
        assert info["objectKey"].endswith(f"sha1/{sha1_of(path)[:2]}/{sha1_of(path)[2:4]}/"
                                          f"{sha1_of(path)[4:6]}/{sha1_of(path)}")
        assert "url" not in info
    assert loaded["json"] == {"a": [1, 2, 3], "b": "kachery 2"}
    assert loaded["missing"] is None and loaded["missing_file"] is None
    # the commands
    (work / "cli.txt").write_text("stored by kachery-store\n")
    stored = zone2.command(["kachery-store", "cli.txt"], key, tmp_path / "up")
    assert stored.returncode == 0, stored.stderr
    uri = stored.stdout.decode().strip().splitlines()[-1]
    assert uri == f"kachery:default:sha1:{sha1_of(work / 'cli.txt')}:cli.txt"
    loaded_cli = zone2.command(["kachery-load", uri, "--dest", "out.txt"], None, tmp_path / "cli-down")
    assert loaded_cli.returncode == 0, loaded_cli.stderr
    assert (work / "out.txt").read_text() == "stored by kachery-store\n"
    cat = zone2.command(["kachery-cat", uris["random.bin"]], None, tmp_path / "cat")
    assert cat.returncode == 0 and cat.stdout == (work / "random.bin").read_bytes()


PRIVATE = """
import json, os, kachery as ka
uri = {uri!r}
def attempt(key, target=uri):
    if key is None:
        os.environ.pop("KACHERY_API_KEY", None)
    else:
        os.environ["KACHERY_API_KEY"] = key
    try:
        path = ka.load_file(target)
        return {{"text": None if path is None else open(path).read()}}
    except Exception as exc:
        return {{"error": str(exc)}}
out = {{"none": attempt(None), "wrong": attempt("wrong-key-123"), "other_zone": attempt({other!r}),
        "no_right": attempt({no_right!r}), "reader": attempt({reader!r})}}
os.environ["KACHERY_ZONE"] = "default"
out["public_wrong"] = attempt("wrong-key-123", "sha1://" + "1" * 40)
out["public_none"] = attempt(None, "sha1://" + "1" * 40)
print(json.dumps(out))
"""


def test_private_zone_and_keys(zone2: Zone2, tmp_path: Path) -> None:
    (zone2.work / "secret.txt").write_text("private to the lab\n")
    uploader = zone2.add_user("lab-uploader", "--zone", "private", "--upload")
    reader = zone2.add_user("lab-reader", "--zone", "private")
    no_right = zone2.add_user("lab-guest", "--zone", "private", "--no-download")
    other = zone2.add_user("public-user")  # a user of zone default only
    uri = zone2.kachery("import json, kachery as ka; print(json.dumps(ka.store_file('secret.txt')))",
                        uploader, tmp_path / "up", zone="private")
    assert uri.startswith("kachery:private:sha1:")
    out = zone2.kachery(PRIVATE.format(uri=uri, other=other, no_right=no_right, reader=reader),
                        None, tmp_path / "down", zone="private")
    assert "(401)" in out["none"]["error"] and "does not allow public download" in out["none"]["error"]
    assert "(401)" in out["wrong"]["error"] and "not one of zone 'private'" in out["wrong"]["error"]
    assert "(401)" in out["other_zone"]["error"]
    assert "(403)" in out["no_right"]["error"]
    assert out["reader"] == {"text": "private to the lab\n"}
    assert "(401)" in out["public_wrong"]["error"]
    assert out["public_none"] == {"text": None}  # anonymous is fine there: not found


REFUSED = """
import json, os, kachery as ka
import kachery.client._api_requests as api
import kachery.client.store_file as sf
out = {}
real_token = api._create_work_token
def bad_token(hash, difficulty):
    n = 0
    while api._check_work_token(f"{n:016x}", hash, difficulty=difficulty):
        n += 1
    return f"{n:016x}"
api._create_work_token = bad_token
try:
    ka.store_file("work.txt")
    out["work"] = None
except Exception as exc:
    out["work"] = str(exc)
api._create_work_token = real_token
real_put = sf.requests.put
sf.requests.put = lambda url, data: real_put(url, data=b"tampered bytes!!")
try:
    ka.store_file("declared.txt")
    out["tampered"] = None
except Exception as exc:
    out["tampered"] = str(exc)
sf.requests.put = real_put
out["declared_info"] = ka.load_file_info("sha1://" + {declared!r})
out["tampered_info"] = ka.load_file_info("sha1://" + {tampered!r})
out["work_info"] = ka.load_file_info("sha1://" + {work!r})
print(json.dumps(out))
"""


def test_bad_work_token_and_tampered_put(zone2: Zone2, tmp_path: Path) -> None:
    work = zone2.work
    (work / "work.txt").write_text("no work done\n")
    (work / "declared.txt").write_bytes(b"declared bytes!!")
    key = zone2.add_user("mallory", "--upload")
    out = zone2.kachery(REFUSED.replace("{declared!r}", repr(sha1_of(work / "declared.txt")))
                        .replace("{tampered!r}", repr(hashlib.sha1(b"tampered bytes!!").hexdigest()))
                        .replace("{work!r}", repr(sha1_of(work / "work.txt"))), key, tmp_path / "kd")
    assert "(400)" in out["work"] and "work token" in out["work"]
    assert "(400)" in out["tampered"] and "content_mismatch" in out["tampered"]
    assert out["declared_info"] is None and out["tampered_info"] is None and out["work_info"] is None


def test_cross_generation(zone2: Zone2, tmp_path: Path) -> None:
    work = zone2.work
    (work / "old.txt").write_text("stored by kachery-cloud 0.4.10\n")
    (work / "new.txt").write_text("stored by kachery 2.0.3\n")
    keys = ClientKeys.generate()
    done = run_cli("clients", "add", keys.client_id, "--config", str(zone2.config), "--upload",
                   env=zone2.env)
    assert done.exit_code == 0, done.output
    script = ("import json, kachery_cloud as kc\n"
              "uri = kc.store_file('old.txt')\n"
              "new = kc.load_file('sha1://{new}')\n"
              "print(json.dumps({{'uri': uri, 'new': open(new).read()}}))\n")
    key = zone2.add_user("bridge", "--upload")
    new_uri = zone2.kachery("import json, kachery as ka; print(json.dumps(ka.store_file('new.txt')))",
                            key, tmp_path / "k2")
    old = run_kachery_cloud(script.format(new=sha1_of(work / "new.txt")), zone2.url, keys,
                            tmp_path / "kc", work)
    assert old["new"] == "stored by kachery 2.0.3\n"
    assert new_uri == f"kachery:default:sha1:{sha1_of(work / 'new.txt')}"
    loaded = zone2.kachery("import json, kachery as ka\n"
                           f"print(json.dumps(open(ka.load_file({old['uri']!r})).read()))",
                           None, tmp_path / "k2-down")
    assert loaded == "stored by kachery-cloud 0.4.10\n"
