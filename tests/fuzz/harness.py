"""Run schemathesis-generated cases of every operation of an OpenAPI document against a
live server and count what came back.

``KACHERY_FUZZ_SCALE`` (default 1) multiplies every case budget, for a long run, e.g.
``KACHERY_FUZZ_SCALE=20 .venv/bin/python -m pytest tests/fuzz -q``.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

SCALE = float(os.environ.get("KACHERY_FUZZ_SCALE", "1"))
Tweak = Callable[[Any, int], None]  # (case, a drawn integer) -> change the case in place


def budget(n: int) -> int:
    return max(1, int(n * SCALE))


@dataclass
class Tally:
    """Answers by operation and status; server errors the document does not allow."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)  # the error codes of the refusals
    unexpected: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


def run_schema(doc: Path, base_url: str, cases: dict[str, int], allowed_5xx: dict[int, set[str]],
               tweak: Tweak | None = None) -> Tally:
    """Fuzz every operation of ``doc`` (positive and negative cases, ``cases[label]`` of
    each, default ``cases['*']``); a 5xx is unexpected unless ``allowed_5xx[status]``
    holds its error code."""
    schema = schemathesis.openapi.from_path(str(doc))
    tally = Tally()
    session = requests.Session()
    for result in schema.get_all_operations():
        op = result.ok()
        n = budget(cases.get(op.label, cases["*"]))
        for mode in schemathesis.GenerationMode:
            _fuzz(op, mode, max(1, n // 2), base_url, session, tally, allowed_5xx, tweak)
    return tally


def _fuzz(op: Any, mode: Any, n: int, base_url: str, session: requests.Session, tally: Tally,
          allowed_5xx: dict[int, set[str]], tweak: Tweak | None) -> None:
    @settings(max_examples=n, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(case=op.as_strategy(mode), pick=st.integers(0, 7))
    def one(case: Any, pick: int) -> None:
        if tweak is not None:
            tweak(case, pick)
        response = case.call(base_url=base_url, session=session, timeout=15,
                             allow_redirects=False)
        tally.statuses[op.label, response.status_code] += 1
        code = _code(response) if response.status_code >= 400 else ""
        if code:
            tally.codes[code] += 1
        if response.status_code >= 500 and code not in allowed_5xx.get(response.status_code,
                                                                        set()):
            tally.unexpected.append(f"{op.label} {mode.value}: {response.status_code} "
                                    f"{response.text[:200]!r} for {case.path_parameters} "
                                    f"{str(case.body)[:200]}")

    # Unsatisfiable: nothing to generate (e.g. a negative case of a GET without input)
    with contextlib.suppress(Unsatisfiable):
        one()


def _code(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    return str(body.get("code") or body.get("error") or "")
