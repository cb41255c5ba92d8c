"""The README's shell blocks, run as written, so the walkthrough cannot drift from the code.

Every ```bash block of README.md follows an HTML comment that says what happens to it:

- ``<!-- run on: MACHINE -->``: run in MACHINE's shell. Each machine is a fresh home
  directory and environment; exports and ``cd`` carry from one of its blocks to the next,
  as in one terminal. A block must exit 0.
- ``<!-- run on: MACHINE, in the background -->``: started and left running (a server,
  ``share``); the comment lines after its command are output it must print, each line in
  full (``…`` stands for any text), before the walk goes on.
- ``<!-- not run: REASON -->``: skipped, and the reason is required.

A block without one of these fails the test. The machines are

- ``operator``: runs the proxy and the zone gateway, which the test starts on loopback
  before the walk (the gateway on its default storage);
- ``owner``: the data owner, whose ``~/data`` holds :data:`OWNER_FILES` and whose
  environment has ``SECRET``, the proxy secret (README step 2);
- ``remote``: a collaborator, who receives the owner's ``manifest.tsv`` (:data:`SENT`);
- ``developer``: starts in this checkout, with the same ``~/data``.

What is site-specific in the README is replaced by its live value (:func:`site_values`);
everything else runs exactly as written. The first two commands of the README (install
and demo, install and tests) are not run here: CI runs them, and ``demo`` has its own test.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ..servers import BIN, ServerProcess, cli_server

README = Path(__file__).resolve().parents[2] / "README.md"
MACHINES = ("operator", "owner", "remote", "developer")
REPO = README.parent

#: the data owner's files, under their home directory (the README links ~/data/session1 and 2)
OWNER_FILES = {
    "data/session1/notes.txt": b"session 1: 30 min, 4 electrodes, 30 kHz\n",
    "data/session1/recording.dat": bytes(range(256)) * 4096,
    "data/session2/recording.dat": bytes(range(255, -1, -1)) * 4096,
}
#: files that travel from one machine to another: (from, path there) -> (to, path there)
SENT = {("owner", "example_resource/manifest.tsv"): ("remote", "manifest.tsv")}
OTHER_SHELLS = ("```sh", "```shell", "```console", "```zsh", "```shell-session")
MARKER = re.compile(r"<!--\s*(run on|not run)\s*:?\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    """One ```bash block of the README and what its marker says to do with it."""

    line: int
    text: str
    machine: str | None  # None: not run
    background: bool = False
    reason: str = ""


def readme_blocks(text: str) -> list[Block]:
    """Every ```bash block with its marker; a missing or incomplete marker is an error."""
    lines = text.splitlines()
    blocks, problems = [], []
    for i, line in enumerate(lines):
        if line.strip() in OTHER_SHELLS:
            problems.append(f"README.md:{i + 1}: a shell block is ```bash, so that it is run")
        if line.strip() != "```bash":
            continue
        body = lines[i + 1:lines.index("```", i + 1)]
        marker = MARKER.match(lines[i - 1].strip()) if i else None
        where = f"README.md:{i + 1}"
        if marker is None:
            problems.append(f"{where}: no <!-- run on: MACHINE --> or <!-- not run: REASON -->")
        elif marker.group(1) == "not run":
            if not marker.group(2):
                problems.append(f"{where}: 'not run' needs a reason")
            blocks.append(Block(i + 1, "\n".join(body), None, reason=marker.group(2)))
        else:
            machine, _, mode = marker.group(2).partition(",")
            if machine.strip() not in MACHINES or mode.strip() not in ("", "in the background"):
                problems.append(f"{where}: unknown marker {lines[i - 1].strip()}")
            blocks.append(Block(i + 1, "\n".join(body), machine.strip(),
                                background=bool(mode.strip())))
    assert not problems, "\n".join(problems)
    return blocks


@dataclass
class Live:
    """The servers the test runs for the operator, and what the walk has learned."""

    proxy: ServerProcess
    gateway: ServerProcess
    secret: str
    client_id: str = ""
    background: list[subprocess.Popen[str]] = field(default_factory=list)


def site_values(live: Live) -> dict[str, str]:
    """What the README shows for a site -> what it is in this run."""
    values = {
        "https://proxy.example.org": live.proxy.url,
        "https://gateway.example.org": live.gateway.url,
    }
    if live.client_id:  # printed by the owner's `init` (its `Client id: …` line)
        values["<CLIENT_ID>"] = live.client_id
    return values


class Machine:
    """A fresh home directory and environment; shell state kept between blocks."""

    def __init__(self, name: str, root: Path, extra_env: dict[str, str],
                 start_dir: Path | None = None) -> None:
        self.name, self.home = name, root / name
        self.home.mkdir()
        self.state = root / f"{name}.state"
        self.state.mkdir()
        env = {"HOME": str(self.home), "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
               "LANG": "C.UTF-8", "TMPDIR": str(root / "tmp"), **extra_env}
        (root / "tmp").mkdir(exist_ok=True)
        self.env = env
        (self.state / "env").write_text("")
        (self.state / "cwd").write_text(str(start_dir or self.home))

    def script(self, block: str, *, save: bool) -> str:
        state = shlex.quote(str(self.state))
        before = f'source {state}/env\ncd "$(cat {state}/cwd)"\nset -e -o pipefail\n'
        after = f"\nexport -p > {state}/env\npwd > {state}/cwd\n" if save else ""
        return before + block + after

    def run(self, block: str) -> str:
        done = subprocess.run(["bash", "-c", self.script(block, save=True)], env=self.env,
                              capture_output=True, text=True, timeout=180)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"on {self.name}, exit {done.returncode}:\n{block}\n---\n{output}"
        return output

    def start(self, block: str, started: list[subprocess.Popen[str]]) -> None:
        """Start ``block`` (added to ``started``); return once it has printed each of its
        expected lines."""
        proc = subprocess.Popen(["bash", "-c", self.script(block, save=False)], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        started.append(proc)
        seen: list[str] = []

        def read() -> None:
            for line in proc.stdout or ():
                seen.append(line.rstrip("\n"))

        threading.Thread(target=read, daemon=True).start()
        expected = expected_output(block)
        deadline = time.monotonic() + 60
        while missing := [text for text, pattern in expected
                          if not any(pattern.fullmatch(line) for line in seen)]:
            if proc.poll() is not None or time.monotonic() > deadline:
                time.sleep(0.2)  # the rest of its output
                raise AssertionError(f"on {self.name}, this block (exit {proc.poll()}):\n{block}\n"
                                     "did not print:\n" + "\n".join(missing)
                                     + "\n--- it printed:\n" + "\n".join(seen))
            time.sleep(0.05)


def substituted(text: str, values: dict[str, str]) -> str:
    for shown, real in values.items():
        text = text.replace(shown, real)
    assert "<CLIENT_ID>" not in text, "the README asks for the client id before init printed it"
    return text


def expected_output(block: str) -> list[tuple[str, re.Pattern[str]]]:
    """The ``# …`` lines of a background block, and as patterns (``…`` matches any text)."""
    return [(line[2:], re.compile(".*".join(map(re.escape, line[2:].split("…")))))
            for line in block.splitlines() if line.startswith("# ")]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Live, dict[str, Machine]]]:
    secret = secrets.token_hex(16)
    machines = {name: Machine(name, tmp_path, {"SECRET": secret} if name == "owner" else {},
                              REPO if name == "developer" else None)
                for name in MACHINES}
    for rel, data in OWNER_FILES.items():
        for name in ("owner", "developer"):
            path = machines[name].home / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    op = machines["operator"]
    with (cli_server(["gateway", "--port", "0"], env=op.env, cwd=op.home) as gateway,
          cli_server(["proxy", "--port", "0"], env={**op.env, "PROXY_SECRET": secret},
                     cwd=op.home) as proxy):
        state = Live(proxy, gateway, secret)
        try:
            yield state, machines
        finally:
            for proc in state.background:
                _stop(proc)


def _stop(proc: subprocess.Popen[str]) -> None:
    """Ctrl-C to a background block's process group, as its user would; then SIGKILL."""
    for sig, wait in ((signal.SIGINT, 10), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):  # all of the group has exited
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def test_every_block_is_marked_and_the_first_two_commands_are_left_to_ci() -> None:
    blocks = readme_blocks(README.read_text())
    first = blocks[0]
    assert first.machine is None and first.text.startswith("scripts/install && .venv/bin/")
    assert {b.machine for b in blocks} >= set(MACHINES)
    bad = "<!-- not run: -->\n```bash\nls\n```\n"
    with pytest.raises(AssertionError, match="needs a reason"):
        readme_blocks(bad)
    with pytest.raises(AssertionError, match="no <!-- run on"):
        readme_blocks("text\n```bash\nls\n```\n")
    with pytest.raises(AssertionError, match="is ```bash"):
        readme_blocks("<!-- not run: x -->\n```sh\nls\n```\n")


def test_the_readme_walkthrough_runs_as_written(live: tuple[Live, dict[str, Machine]]) -> None:
    state, machines = live
    ran: list[str] = []
    for block in readme_blocks(README.read_text()):
        if block.machine is None:
            continue
        machine = machines[block.machine]
        for (src, src_path), (dst, dst_path) in SENT.items():
            if dst == machine.name and (machines[src].home / src_path).exists():
                shutil.copy(machines[src].home / src_path, machine.home / dst_path)
        text = substituted(block.text, site_values(state))
        if block.background:
            machine.start(text, state.background)
        else:
            output = machine.run(text)
            found = re.search(r"^Client id: (\S+)$", output, re.MULTILINE)
            if machine.name == "owner" and found:
                state.client_id = found.group(1)
        ran.append(f"{machine.name}:{block.line}")
    remote = machines["remote"].home
    notes = OWNER_FILES["data/session1/notes.txt"]
    assert (remote / "notes.txt").read_bytes() == notes
    # it came through the zone's bucket, where the owner's daemon uploaded it on demand
    bucket = machines["operator"].home / ".kachery-resource" / "gateway"
    assert [p.read_bytes() for p in bucket.rglob(hashlib.sha1(notes).hexdigest())] == [notes]
    assert len(ran) >= 6, ran
