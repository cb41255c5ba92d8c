"""Announcements of resources beyond the matrix's credential kinds (test_gateway_matrix.py):
another client's live announcement can be neither taken over (409) nor withdrawn, and a
replayed announcement is the same idempotent renewal inside the timestamp window and a
401 after it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kachery_resource.identity import ClientKeys

from ..gateway.conftest import envelope
from .test_gateway_matrix import RESOURCE, WINDOW, Client, gw, post

__all__ = ["gw"]  # the fixture


def announce(url: str = RESOURCE) -> dict[str, Any]:
    return {"type": "announceResource", "resourceUrl": url}


def withdraw(url: str = RESOURCE) -> dict[str, Any]:
    return {"type": "withdrawResource", "resourceUrl": url}


async def test_another_clients_announcement(gw: tuple[Client, dict[str, ClientKeys]]) -> None:
    client, who = gw
    owner, admin = who["owner"], who["admin"]  # both may upload to zone default
    assert (await post(client, envelope(owner, announce())))[0] == 200
    status, answer = await post(client, envelope(admin, announce()))
    assert (status, answer["error"]) == (409, "resource_announced_by_another_client"), answer
    assert owner.client_id in answer["message"]
    status, answer = await post(client, envelope(admin, withdraw()))
    assert (status, answer["withdrawn"]) == (200, False)
    # the owner's announcement is still there: renewing it works, withdrawing it too
    assert (await post(client, envelope(owner, announce())))[0] == 200
    status, answer = await post(client, envelope(owner, withdraw()))
    assert (status, answer["withdrawn"]) == (200, True)
    assert (await post(client, envelope(admin, announce())))[0] == 200  # free again


async def test_replayed_announcement(gw: tuple[Client, dict[str, ClientKeys]]) -> None:
    client, who = gw
    stamp = int((time.time() - WINDOW + 2.5) * 1000)
    body = envelope(who["owner"], announce(), timestamp=stamp)
    for _ in range(2):
        status, answer = await post(client, body)
        assert status == 200 and answer["resourceUrl"] == RESOURCE, answer
    # a withdrawal replayed after the window cannot take a later announcement down
    gone = envelope(who["owner"], withdraw(), timestamp=stamp)
    assert (await post(client, gone))[1]["withdrawn"] is True
    assert (await post(client, envelope(who["owner"], announce())))[0] == 200
    await asyncio.sleep(3.5)
    for replay in (body, gone):
        status, answer = await post(client, replay)
        assert (status, answer["error"]) == (401, "timestamp_out_of_window"), answer
