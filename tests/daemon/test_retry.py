"""The upload layer's one retry policy (daemon/uploads/retry.py)."""

from __future__ import annotations

import pytest

from kachery_resource.daemon.uploads import retry
from kachery_resource.daemon.uploads.retry import TransientError, with_retries
from kachery_resource.errors import GatewayError, UploadFailedError


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(retry.asyncio, "sleep", sleep)
    return slept


async def test_transient_failures_are_retried_with_capped_jittered_backoff(
        waits: list[float]) -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 9:
            raise TransientError(f"busy {calls}")
        return "done"

    assert await with_retries("thing", flaky, tries=9) == "done"
    assert calls == 9 and len(waits) == 8
    ceilings = [min(0.5 * 2**i, retry.MAX_DELAY_SEC) for i in range(8)]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True))
    assert ceilings[-1] == retry.MAX_DELAY_SEC == 30.0


async def test_last_failure_and_hint_are_reported(waits: list[float]) -> None:
    async def down() -> None:
        raise TransientError("no route")

    with pytest.raises(UploadFailedError, match="part 3 failed after 2 tries: no route; resume"):
        await with_retries("part 3", down, tries=2, hint="; resume")
    assert len(waits) == 1


async def test_a_refusal_ends_the_retry(waits: list[float]) -> None:
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise GatewayError("no", 403)

    with pytest.raises(GatewayError):
        await with_retries("call", refused)
    assert calls == 1 and waits == []
