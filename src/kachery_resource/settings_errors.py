"""Turn a pydantic ValidationError from a server's settings into a message for its user.

Each problem is one line naming what the user wrote -- the flag or environment variable a
value came from, else its key in the config file --, the value as written, and the rule in
plain words (from the field's numeric limits, the validator's message, or pydantic's own
words); several problems are listed under a count. For example::

    invalid --max-wait-sec -5: must be a number greater than 0 and at most 600
    unknown key zones.lab.prefx (in gateway config zones.yaml); known keys there: ... (see ...)
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

_LIMITS = {"gt": "greater than", "ge": "at least", "lt": "less than", "le": "at most"}
"""The words of each numeric constraint, lower bounds first."""


def explain(exc: ValidationError, model: type[BaseModel], *, program: str, docs: str,
            config: Path | None = None, named: Mapping[str, str] | None = None) -> str:
    """The problems of ``exc`` (raised validating ``model``), one line each.

    ``named`` maps a top-level key to how the user gave its value (``--port``, ``$PORT``);
    other values are reported by their key in ``config``. ``program`` (``gateway``) and
    ``docs`` (``docs/gateway.md``) complete the wording.
    """
    problems = [_problem(error, model, program, docs, config, named or {})
                for error in exc.errors(include_url=False)]
    if len(problems) > 1:
        problems = [f"{len(problems)} problems in the {program} settings:",
                    *(f"  {p}" for p in problems)]
    return "\n".join(problems)


def show(value: object) -> str:
    """A value as the user wrote it: ``-1`` not ``-1.0``, ``true``, a string quoted only if it
    is empty or holds spaces or unprintable characters."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        plain = value and value.isprintable() and not any(c.isspace() for c in value)
        return value if plain else repr(value)
    return repr(value)


def _problem(error: ErrorDetails, model: type[BaseModel], program: str, docs: str,
             config: Path | None, named: Mapping[str, str]) -> str:
    loc = error["loc"]
    key = ".".join(str(part) for part in loc)
    holder, field = _lookup(model, loc)
    if len(loc) == 1 and str(loc[0]) in named:
        where, source = named[str(loc[0])], ""
    elif config is not None:
        where, source = key, f" (in {program} config {config})"
    else:
        where, source = f"{program} setting {key}", ""
    if error["type"] == "extra_forbidden":
        known = sorted(f.alias or name for name, f in holder.model_fields.items()) if holder else []
        return f"unknown key {where}{source}; known keys there: {', '.join(known)} (see {docs})"
    value = error["input"]
    shown = f" {show(value)}" if isinstance(value, str | int | float) else ""
    return f"invalid {where}{shown}{source}: {_rule(error, field)}"


def _rule(error: ErrorDetails, field: FieldInfo | None) -> str:
    """A validator's message, ``must be a whole number from 0 to 65535`` (from the field's
    limits), or pydantic's message."""
    ctx = error.get("ctx", {})
    if error["type"] == "value_error" and "error" in ctx:
        return str(ctx["error"])
    kind = {int: "a whole number", float: "a number"}.get(_strip_none(field and field.annotation))
    limits = {name: getattr(m, name) for name in _LIMITS for m in (field.metadata if field else [])
              if getattr(m, name, None) is not None}
    if kind and limits.keys() == {"ge", "le"}:
        return f"must be {kind} from {show(limits['ge'])} to {show(limits['le'])}"
    if kind and limits:
        return f"must be {kind} " + " and ".join(f"{_LIMITS[k]} {show(v)}" for k, v in limits.items())
    return re.sub(r"^Input should be", "must be", error["msg"])


def _lookup(model: type[BaseModel],
            loc: Sequence[int | str]) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """The model whose key is the last of ``loc``, and that key's field (None if unknown).

    Follows nested models, ``dict[str, X]`` values and ``list[X]`` items, so that an error
    deep in a config (``zones.lab.storage``) finds its own model and field.
    """
    tp: Any = model
    holder: type[BaseModel] | None = None
    field: FieldInfo | None = None
    for part in loc:
        tp, holder, field = _strip_none(tp), None, None
        origin, args = get_origin(tp), get_args(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            holder = tp
            field = next((f for name, f in tp.model_fields.items() if part in (name, f.alias)), None)
            tp = field.annotation if field else None
        elif origin in (dict, Mapping) and len(args) == 2:
            tp = args[1]
        elif origin in (list, Sequence) and len(args) == 1 and isinstance(part, int):
            tp = args[0]
        else:
            return None, None
    return holder, field


def _strip_none(tp: Any) -> Any:
    """``X`` for ``X | None``; any other type unchanged."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp
