"""``kachery-resource init``: ask for (or take from flags) the settings, write the config,
make sure client keys exist and say how to register them."""

from __future__ import annotations

import socket
import sys
import urllib.parse
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..config import (
    DEFAULT_MAX_CONCURRENT_UPLOADS,
    DEFAULT_ZONE,
    ResourceConfig,
    check_positive_int,
    check_resource_name,
    check_url,
    check_zone,
    load_config_defaults,
    parse_config,
    save_config,
)
from ..errors import ConfigError
from ..identity import ClientKeys, ensure_client_keys, load_client_keys
from ..store import default_store_dir


def _ask(
    label: str,
    flag: str,
    given: Any,
    default: Any,
    check: Callable[[Any], Any],
    *,
    use_defaults: bool,
    hide: bool = False,
) -> Any:
    """A flag value (validated, error if bad), else the default, else a prompt that re-asks.

    With ``-y`` a value that has no default is an error (a script must not hang on a
    prompt), except a hidden one, which may stay empty; so is input that ends unanswered."""
    if given is not None:
        try:
            return check(given)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=f"'{flag}'") from None
    if use_defaults:
        if default not in (None, ""):
            return check(default)
        if hide:
            return None
        raise click.UsageError(f"-y found no {label.lower()} in the existing config; give it "
                               f"with {flag}")

    def proc(value: str) -> Any:
        try:
            return check(value)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None

    try:
        if hide:
            hint = " (Enter keeps the current one)" if default else ""
            with warnings.catch_warnings():  # piped stdin: getpass cannot turn echo off
                warnings.simplefilter("ignore")
                return click.prompt(f"{label}{hint}", default=default or None, hide_input=True,
                                    show_default=False, value_proc=proc)
        return click.prompt(label, default=default, value_proc=proc)
    except click.Abort:
        if sys.stdin.isatty():
            raise  # Ctrl-C or Ctrl-D at the terminal
        raise click.UsageError(f"the input ended before {label!r} had a valid answer; give it "
                               f"with {flag}") from None


def _optional_url(what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        text = str(value).strip()
        return None if text in ("", ".", "none") else check_url(text, what)

    return check


def run_init(
    config_path: Path,
    *,
    name: str | None,
    zone: str | None,
    max_uploads: str | None,
    proxy_url: str | None,
    proxy_secret: str | None,
    gateway_url: str | None,
    use_defaults: bool,
) -> ResourceConfig:
    """Collect the settings, write ``config_path`` (0600), ensure keys, print next steps."""
    if not config_path.parent.is_dir():
        raise ConfigError(f"cannot write {config_path}: the directory {config_path.parent} does "
                          "not exist; create it or choose another --config")
    old = load_config_defaults(config_path)
    opts = {"use_defaults": use_defaults}
    answers: dict[str, Any] = dict(old)
    answers["resourceName"] = _ask("Resource name", "--name", name, old.get("resourceName"),
                                   lambda v: check_resource_name(str(v).strip()), **opts)
    answers["kacheryZone"] = _ask("Kachery zone (use . for default zone)", "--zone", zone,
                                  old.get("kacheryZone") or ".",
                                  lambda v: check_zone(str(v).strip()), **opts)
    answers["maxConcurrentUploads"] = _ask("Maximum concurrent uploads", "--max-concurrent-uploads",
                                           max_uploads,
                                           old.get("maxConcurrentUploads")
                                           or DEFAULT_MAX_CONCURRENT_UPLOADS,
                                           check_positive_int, **opts)
    answers["proxyUrl"] = _ask("Proxy URL", "--proxy-url", proxy_url, old.get("proxyUrl"),
                               lambda v: check_url(str(v), "proxy URL"), **opts)
    answers["proxySecret"] = _ask("Proxy secret", "--proxy-secret", proxy_secret, old.get("proxySecret"),
                                  lambda v: str(v), hide=True, **opts) or None
    if gateway_url is not None or old.get("gatewayUrl"):
        answers["gatewayUrl"] = _ask("Gateway URL", "--gateway-url", gateway_url, old.get("gatewayUrl"),
                                     _optional_url("gateway URL"), use_defaults=True)
    if answers.get("kacheryZone") == DEFAULT_ZONE:
        answers.pop("kacheryZone")
    config = parse_config(answers, str(config_path))
    save_config(config, config_path)
    click.echo(f"Wrote {config_path}")
    _ensure_keys_and_explain(config)
    return config


def registration_url(gateway_url: str, keys: ClientKeys, zone: str) -> str:
    """The page of a kachery gateway where a signed-in user registers this client."""
    signature = keys.sign({"type": "addClient"})
    label = urllib.parse.quote(socket.gethostname())
    return (f"{gateway_url}/registerClient/{keys.client_id}?signature={signature}"
            f"&zone={urllib.parse.quote(zone)}&label={label}")


def _ensure_keys_and_explain(config: ResourceConfig) -> None:
    store_dir = default_store_dir()
    keys = load_client_keys(store_dir)
    if keys is None:
        keys, _ = ensure_client_keys(store_dir)
        click.echo(f"Created kachery-cloud client keys in {store_dir}")
    gateway = config.gateway_url()
    click.echo(f"Client id: {keys.client_id}")
    click.echo(
        "\nRegister this client with the gateway of zone "
        f"{config.zone!r} ({gateway}) so the daemon may upload:\n"
        f"  - on a self-hosted gateway, its operator runs:\n"
        f"      kachery-resource gateway clients add {keys.client_id} --zone {config.zone} "
        "--upload --download --storage …\n"
        f"  - on a kachery gateway with a web page, open:\n"
        f"      {registration_url(gateway, keys, config.zone)}\n"
        "Then run `kachery-resource share` in this directory."
    )
