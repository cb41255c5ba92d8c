"""`kachery-resource dev DIR` keeps the stack up and prints what a client needs."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from kachery_resource.client import ClientSettings, load_file, request_file

from ..servers import BIN, start_cli


def test_dev_shares_a_directory_until_stopped(tmp_path: Path) -> None:
    share = tmp_path / "my data"
    share.mkdir()
    (share / "hello wörld.txt").write_text("hello from dev\n")
    (share / "other.bin").write_bytes(b"other" * 1000)
    dev = start_cli(["dev", str(share)], ready=r"kachery-resource load (sha1://\S+)", timeout=90)
    try:
        text = dev.text()
        env = dict(re.findall(r"export (KACHERY_\w+)=(\S+)", text))
        assert set(env) == {"KACHERY_GATEWAY_URL", "KACHERY_RESOURCE_URL", "KACHERY_ZONE",
                            "KACHERY_CLOUD_DIR"}
        env.pop("KACHERY_CLOUD_DIR")
        settings = ClientSettings.from_env({**env, "KACHERY_CLOUD_DIR": str(tmp_path / "client")})
        path = load_file(dev.url, settings=settings, progress=False, timeout=30)
        assert Path(path).read_text() == "hello from dev\n"
        cat = subprocess.run([str(BIN / "kachery-resource"), "cat", dev.url], capture_output=True,
                             env={**os.environ, **env, "KACHERY_CLOUD_DIR": str(tmp_path / "c2")},
                             timeout=60)
        assert (cat.returncode, cat.stdout) == (0, b"hello from dev\n")
        # request: status only. The gateway's findFile asked the daemon (on demand), so the
        # file is in the bucket by the time the client's findFile is answered
        other = "sha1://" + hashlib.sha1(b"other" * 1000).hexdigest()
        first = request_file(other, settings=settings)
        assert (first.source, first.status, first.size) == ("bucket", "completed", 5000)
        t0 = time.monotonic()
        missing = request_file("sha1://" + "0" * 40, settings=settings)
        assert time.monotonic() - t0 < 0.9  # a final answer comes at once, not after the wait
        assert (missing.source, missing.status) == ("resource", "not-found")
        # where every shared file's URI is
        listed = re.search(r"the sha1:// URI of every shared file \(2\): (\S+)", dev.text())
        assert listed is not None
        manifest = dict(line.split("\t") for line in Path(listed.group(1)).read_text().splitlines())
        assert manifest[str(share / "other.bin")] == other
        assert manifest[str(share / "hello wörld.txt")] == dev.url
    finally:
        dev.stop(signal.SIGTERM)
    assert dev.proc.returncode == 0
    workspace = re.search(r"logs in (\S+);", dev.text())
    assert workspace is not None and not Path(workspace.group(1)).exists()


def test_dev_keep_prints_a_whole_second_shell_and_keeps_the_logs(tmp_path: Path) -> None:
    share = tmp_path / "one"
    share.mkdir()
    (share / "only.txt").write_text("the only file\n")
    dev = start_cli(["dev", str(share), "--keep"], ready=r"kachery-resource load (sha1://\S+)",
                    timeout=90)
    try:
        text = dev.text()
        assert "linked    1 file under" in text and "1 files" not in text
        # a second shell with nothing of ours in its environment and a fresh HOME
        exports = "\n".join(line.strip() for line in text.splitlines() if line.strip().startswith("export "))
        assert "export KACHERY_CLOUD_DIR=" in exports
        env = {k: v for k, v in os.environ.items() if not k.startswith("KACHERY_")}
        env["HOME"] = str(tmp_path / "home")
        env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
        shell = subprocess.run(["bash", "-c", f"{exports}\nkachery-resource load {dev.url}"],
                               capture_output=True, text=True, env=env, timeout=60)
        assert shell.returncode == 0, shell.stderr
        assert Path(shell.stdout.strip()).read_text() == "the only file\n"
        assert not (tmp_path / "home" / ".kachery-cloud").exists()  # its own store was used
    finally:
        dev.stop(signal.SIGTERM)
    assert dev.proc.returncode == 0
    kept = re.search(r"workspace kept: (\S+)", dev.text())
    assert kept is not None and (Path(kept.group(1)) / "daemon.log").read_text()
    shutil.rmtree(kept.group(1))
