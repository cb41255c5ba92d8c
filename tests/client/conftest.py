from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kachery_resource.client import ClientSettings
from kachery_resource.identity import ClientKeys

from .fakes import FakeState, fake_stack


@pytest.fixture
def fake() -> Iterator[tuple[str, FakeState]]:
    with fake_stack() as stack:
        yield stack


@pytest.fixture
def settings(fake: tuple[str, FakeState], kc_dir: Path, client_keys: ClientKeys) -> ClientSettings:
    base, _ = fake
    return ClientSettings(store_dir=kc_dir, gateway_url=base, zone="default",
                          resource_url=f"{base}/r/res1", keys=client_keys)
