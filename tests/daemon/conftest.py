"""The daemon tests' own collection rule: tests marked ``slow`` here (the 6 GiB multipart
uploads, ~6 minutes on 2 cores) run only when asked for: ``pytest -m slow`` or
``KACHERY_SLOW_TESTS=1``. Smaller versions of them are in the default run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("markexpr") or os.environ.get("KACHERY_SLOW_TESTS") == "1":
        return
    slow = [i for i in items if i.get_closest_marker("slow") and HERE in Path(str(i.path)).parents]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [i for i in items if i not in slow]
