"""settings_errors: one line per settings problem, naming what the user wrote and the rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kachery_resource.settings_errors import explain, show


class Part(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    size: int | None = Field(None, ge=1, le=10)
    label: str = ""


class Top(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    port: int = Field(0, ge=0, le=65535)
    wait_sec: float = Field(1.0, alias="waitSec", gt=0)
    plain: int = 0
    url: str = ""
    parts: dict[str, Part] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not value.startswith("http"):
            raise ValueError("must be an http:// URL")
        return value


def message(data: dict[str, Any], config: Path | None = Path("top.yaml"),
            named: dict[str, str] | None = None) -> str:
    with pytest.raises(ValidationError) as info:
        Top.model_validate(data)
    return explain(info.value, Top, program="top", docs="docs/top.md", config=config, named=named)


@pytest.mark.parametrize(("value", "shown"), [
    (-1.0, "-1"), (0.25, "0.25"), (70000, "70000"), (True, "true"), ("abc", "abc"),
    ("gs://b", "gs://b"), ("", "''"), ("not sure", "'not sure'"), ("a\tb", "'a\\tb'"),
])
def test_values_are_shown_as_written(value: object, shown: str) -> None:
    assert show(value) == shown


def test_numeric_rules_come_from_the_field_limits() -> None:
    assert message({"port": "abc"}) == \
        "invalid port abc (in top config top.yaml): must be a whole number from 0 to 65535"
    assert message({"waitSec": 0}) == "invalid waitSec 0 (in top config top.yaml): must be a number greater than 0"
    assert message({"parts": {"a": {"size": 1.5}}}) == \
        "invalid parts.a.size 1.5 (in top config top.yaml): must be a whole number from 1 to 10"
    assert message({"plain": "x"}) == ("invalid plain x (in top config top.yaml): "
                                       "must be a valid integer, unable to parse string as an integer")


def test_flags_and_environment_variables_are_named() -> None:
    named = {"wait_sec": "--wait-sec", "port": "$PORT"}
    assert message({"wait_sec": -1.0}, named=named) == "invalid --wait-sec -1: must be a number greater than 0"
    assert message({"port": "x y"}, config=None, named=named) == \
        "invalid $PORT 'x y': must be a whole number from 0 to 65535"
    assert message({"plain": "x"}, config=None, named=named).startswith("invalid top setting plain x: must be")


def test_validator_messages_and_unknown_keys() -> None:
    assert message({"url": "ftp://h"}) == "invalid url ftp://h (in top config top.yaml): must be an http:// URL"
    assert message({"prts": {}}) == ("unknown key prts (in top config top.yaml); known keys there: "
                                     "parts, plain, port, url, waitSec (see docs/top.md)")
    assert message({"parts": {"a": {"lable": "x"}}}) == (
        "unknown key parts.a.lable (in top config top.yaml); known keys there: label, size (see docs/top.md)")


def test_several_problems_are_listed_under_a_count() -> None:
    text = message({"port": -1, "parts": {"a": {"size": 0, "x": 1}}}, named={"port": "--port"})
    assert text.splitlines() == [
        "3 problems in the top settings:",
        "  invalid --port -1: must be a whole number from 0 to 65535",
        "  invalid parts.a.size 0 (in top config top.yaml): must be a whole number from 1 to 10",
        "  unknown key parts.a.x (in top config top.yaml); known keys there: label, size (see docs/top.md)",
    ]
    assert "pydantic" not in text and "http" not in text
