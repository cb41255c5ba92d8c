"""Small helpers shared by the client's HTTP calls: error text (and code) from any server body."""

from __future__ import annotations

import json

import requests


def error_text(resp: requests.Response, limit: int = 500) -> str:
    """The message a server put in an error body (JSON ``message``/``error``, else text)."""
    text = resp.text
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:limit] or resp.reason or f"HTTP {resp.status_code}"
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message")
            if isinstance(value, str) and value:
                return value[:limit]
    return text.strip()[:limit]


def error_code(resp: requests.Response) -> str | None:
    """The machine-readable code of our gateway's error body (``{"error": code,
    "message": …}``), else None."""
    try:
        body = json.loads(resp.text)
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        code = body.get("error")
        return code if isinstance(code, str) else None
    return None
