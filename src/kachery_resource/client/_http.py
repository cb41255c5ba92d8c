"""Small helpers shared by the client's HTTP calls: error text from any server body."""

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
