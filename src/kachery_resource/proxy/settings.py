"""The proxy's settings: one pydantic model used by the CLI, the config file and the app.

A YAML config file (``kachery-resource proxy --config proxy.yaml``) may set any field,
by its Python name or its camelCase alias; command-line flags override the file, and
``PROXY_SECRET`` / ``PORT`` come from the environment like the old proxy.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from ..errors import ConfigError
from ..settings_errors import explain

DEFAULT_TOKENS_FILE = "kachery-proxy-tokens.json"


class ProxySettings(BaseModel):
    """Every setting of the proxy, with its default."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    host: str = "127.0.0.1"  # interface to listen on (use 0.0.0.0 on a public server)
    port: int = Field(3030, ge=0, le=65535)  # TCP port; 0 picks a free one
    proxy_secret: str = Field("", repr=False)  # shared secret for names without a token
    tokens_file: Path | None = None  # per-resource credentials (see ``proxy tokens``)
    require_tokens: bool = False  # refuse the shared secret: every name needs its token
    resource_zones: dict[str, str] = Field(default_factory=dict)  # names whose zone is fixed
    max_wait_sec: float = Field(25.0, gt=0, le=600)  # clamp of one HTTP wait (outer timeout)
    inner_margin_sec: float = Field(1.0, ge=0, le=60)  # inner timeout = outer wait - margin
    max_body_bytes: int = Field(65536, ge=1024)  # largest POST /r/{name} body
    max_frame_bytes: int = Field(1 << 20, ge=1024)  # largest WebSocket message from a daemon
    max_inflight_per_resource: int = Field(1000, ge=1)  # waiting requests per resource -> 429
    max_connections_per_ip: int = Field(1024, ge=0)  # open HTTP requests + sockets; 0 = no limit
    heartbeat_sec: float = Field(30.0, gt=0)  # WebSocket ping interval; dead after 1.5x
    init_timeout_sec: float = Field(10.0, gt=0)  # a daemon must send initialize within this
    nats_url: str | None = None  # NATS server for several instances; None = single instance
    nats_subject_prefix: str = "kachery-resource"  # subjects: <prefix>.r.<hex name>
    instance_id: str = Field(default_factory=lambda: secrets.token_hex(6))
    access_log: str = "-"  # "-" = stderr, "off", or a file path (JSON lines)
    trust_forwarded_for: bool = False  # take the client IP from X-Forwarded-For


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML config file into a dict of settings; raise ConfigError if unusable."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read proxy config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"proxy config {path} must be a mapping of setting: value")
    return data


def make_settings(file_values: dict[str, Any], overrides: dict[str, Any], *,
                  names: dict[str, str] | None = None,
                  config_file: Path | None = None) -> ProxySettings:
    """Build settings from a config file's values and explicit overrides (flags, env).

    ``names`` says how the user wrote each override (``--max-wait-sec``, ``$PORT``; default:
    the flag), so that an invalid value is reported under that name; values from the file
    are reported under their key in ``config_file``.
    """
    values = dict(file_values)
    given = {k: v for k, v in overrides.items() if v is not None}
    for key in given:  # an override wins over the same setting spelled camelCase in the file
        values.pop(to_camel(key), None)
    values.update(given)
    try:
        return ProxySettings.model_validate(values)
    except ValidationError as exc:
        named = {k: (names or {}).get(k, "--" + k.replace("_", "-")) for k in given}
        raise ConfigError(explain(exc, ProxySettings, program="proxy", docs="docs/proxy.md",
                                  config=config_file, named=named)) from None
