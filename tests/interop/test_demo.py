"""`kachery-resource demo` runs the whole stack once and cleans up after itself."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from ..servers import BIN


def test_demo_exits_0_and_cleans_up() -> None:
    done = subprocess.run([str(BIN / "kachery-resource"), "demo"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for step in ("gateway", "proxy", "linked", "daemon", "cold", "warm", "demo OK"):
        assert re.search(rf"\b{step}\b", out), f"missing step {step!r}:\n{out}"
    workspace = Path(re.search(r"workspace (\S+)", out).group(1))  # type: ignore[union-attr]
    assert not workspace.exists()
    cold = int(re.search(r"cold\s+\S+ [\d,]+ bytes in (\d+) ms", out).group(1))  # type: ignore[union-attr]
    assert cold < 10_000
    # every child process was started in the demo's own session and is gone now
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(workspace) not in ps
