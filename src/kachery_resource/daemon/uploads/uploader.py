"""The uploader the daemon's jobs use: asks the bucket, then hands the file to a plan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ...store import LocalFile
from .gateway import DaemonGateway
from .retry import with_retries
from .single import SinglePlan

Progress = Callable[[int], None]


class Plan(Protocol):
    """One way to get a whole file into the bucket (see the package docstring)."""

    async def wants(self, local: LocalFile) -> bool:
        """Whether this plan takes ``local`` (its size, what the gateway offers)."""
        ...

    async def upload(self, local: LocalFile, progress: Progress) -> bool:
        """Upload ``local``; False when the gateway already had it (nothing sent)."""
        ...

    def close(self) -> None: ...


class GatewayUploader:
    """Implements the jobs' ``Uploader``: bucket lookups, and each upload by the first of
    ``plans`` that wants the file, else by the single plan (which takes any file)."""

    def __init__(self, gateway: DaemonGateway, *plans: Plan, max_threads: int = 64) -> None:
        self.gateway = gateway
        self.plans: tuple[Plan, ...] = (*plans, SinglePlan(gateway, max_threads))

    def close(self) -> None:
        for plan in self.plans:
            plan.close()

    async def is_in_bucket(self, sha1: str) -> bool:
        return await with_retries(f"findFile sha1://{sha1}", lambda: self.gateway.find_file(sha1))

    async def upload(self, local: LocalFile, progress: Progress) -> bool:
        """Upload ``local`` unless the gateway has it (then False, and nothing is sent)."""
        for plan in self.plans:
            if await plan.wants(local):
                return await plan.upload(local, progress)
        raise AssertionError("the single plan takes every file")
