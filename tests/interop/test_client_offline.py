"""With --timeout, our client waits for a resource whose daemon is down, then fetches."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from kachery_resource import ResourceOfflineError
from kachery_resource.client import load_file

from ..servers import start_cli
from .conftest import Stack


def test_a_daemon_that_comes_back_within_the_timeout(local_stack: Stack, tmp_path: Path) -> None:
    st = local_stack
    data = os.urandom(100_000)
    (tmp_path / "later.bin").write_bytes(data)
    [uri] = st.host_add([("link", tmp_path / "later.bin")])
    daemon = st.start_daemon("comes-back")
    settings = st.our_settings("waits", resource_url=daemon.url)
    daemon.stop()  # the data owner's machine is down
    with pytest.raises(ResourceOfflineError):  # without a timeout: at once, as before
        load_file(uri, settings=settings, progress=False)

    got: list[str | BaseException] = []

    def fetch() -> None:
        try:
            got.append(load_file(uri, settings=settings, progress=False, timeout=90))
        except BaseException as exc:
            got.append(exc)

    thread = threading.Thread(target=fetch)
    thread.start()
    time.sleep(1.5)
    assert thread.is_alive() and got == []  # still waiting, not failed
    again = start_cli(["share"], env=st.host_env(), cwd=st.workdir / "resource-comes-back",
                      ready=r"KACHERY_RESOURCE_URL=(\S+)", timeout=60)
    st.extra.append(again)
    thread.join(90)
    assert len(got) == 1 and isinstance(got[0], str), got
    assert Path(got[0]).read_bytes() == data
