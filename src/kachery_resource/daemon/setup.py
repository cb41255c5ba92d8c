"""``kachery-resource init``: ask for (or take from flags) the settings, write the config,
make sure client keys exist and say how to register them."""

from __future__ import annotations

import os
import socket
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from .. import servers
from ..config import (
    DEFAULT_MAX_CONCURRENT_UPLOADS,
    DEFAULT_ZONE,
    ResourceConfig,
    check_known_keys,
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
from .checks import Check, check_store
from .state import state_dir_for


def _read_answer(label: str, flag: str, default: Any, check: Callable[[Any], Any]) -> Any:
    """A line from stdin when it is not a terminal: no prompt text (no noise in a script's
    output), an empty line keeps the default, a bad answer is explained and the next
    line read."""
    while True:
        line = sys.stdin.readline()
        if not line:
            raise click.UsageError(f"the input ended before {label!r} had a valid answer; give "
                                   f"it with {flag}")
        text = line.rstrip("\n")
        if text == "" and default not in (None, ""):
            return check(default)
        try:
            return check(text)
        except ValueError as exc:
            click.echo(f"error: {label}: {exc}", err=True)


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
    """A flag value (already validated), else the default, else a prompt that re-asks.

    With ``-y`` a value that has no default is an error (a script must not hang on a
    prompt), except a hidden one, which may stay empty; so is input that ends unanswered."""
    if given is not None:
        return check(given)
    if use_defaults:
        if default not in (None, ""):
            return check(default)
        if hide:
            return None
        raise click.UsageError(f"-y found no {label.lower()} in the existing config; give it "
                               f"with {flag}")
    if not sys.stdin.isatty():
        return _read_answer(label, flag, default, check)

    def proc(value: str) -> Any:
        try:
            return check(value)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None

    if hide:
        hint = " (Enter keeps the current one)" if default else ""
        return click.prompt(f"{label}{hint}", default=default or None, hide_input=True,
                            show_default=False, value_proc=proc)
    return click.prompt(label, default=default, value_proc=proc)


def _optional_url(what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        text = str(value).strip()
        return None if text in ("", ".", "none") else check_url(text, what)

    return check


def _directory(value: Any) -> str | None:
    text = str(value).strip()
    return None if text in ("", ".", "none") else os.path.abspath(os.path.expanduser(text))


FLAG_CHECKS: dict[str, Callable[[Any], Any]] = {
    "--name": lambda v: check_resource_name(str(v).strip()),
    "--zone": lambda v: check_zone(str(v).strip()),
    "--max-concurrent-uploads": check_positive_int,
    "--proxy-url": lambda v: check_url(str(v), "proxy URL"),
    "--gateway-url": _optional_url("gateway URL"),
}


def check_flags(flags: dict[str, Any]) -> None:
    """Every bad flag value at once (a UsageError listing each), not only the first."""
    problems = []
    for flag, value in flags.items():
        if value is not None and flag in FLAG_CHECKS:
            try:
                FLAG_CHECKS[flag](value)
            except ValueError as exc:
                problems.append(f"{flag}: {exc}")
    if problems:
        raise click.UsageError("\n  ".join(["bad options:", *problems]))


def _from_env(answers: dict[str, Any], key: str, env_name: str, given: Any,
              convert: Callable[[Any], Any]) -> None:
    """Record ``$env_name`` as ``key`` when no flag gave the value, so that ``share`` in a
    new shell uses what this one had."""
    value = os.environ.get(env_name)
    if given is None and value:
        answers[key] = convert(value)
        click.echo(f"{key}: {answers[key]} (from {env_name})", err=True)


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
    kachery_cloud_dir: str | None = None,
    check: bool = False,
) -> ResourceConfig:
    """Collect the settings, check them (``check``), write ``config_path`` (0600), ensure
    keys, print next steps."""
    if not config_path.parent.is_dir():
        raise ConfigError(f"cannot write {config_path}: the directory {config_path.parent} does "
                          "not exist; create it or choose another --config")
    check_flags({"--name": name, "--zone": zone, "--max-concurrent-uploads": max_uploads,
                 "--proxy-url": proxy_url, "--gateway-url": gateway_url})
    old = load_config_defaults(config_path)
    check_known_keys(old, str(config_path))
    opts = {"use_defaults": use_defaults}
    answers: dict[str, Any] = dict(old)
    answers["resourceName"] = _ask("Resource name", "--name", name, old.get("resourceName"),
                                   FLAG_CHECKS["--name"], **opts)
    answers["kacheryZone"] = _ask("Kachery zone (use . for default zone)", "--zone", zone,
                                  old.get("kacheryZone") or ".", FLAG_CHECKS["--zone"], **opts)
    answers["maxConcurrentUploads"] = _ask("Maximum concurrent uploads", "--max-concurrent-uploads",
                                           max_uploads,
                                           old.get("maxConcurrentUploads")
                                           or DEFAULT_MAX_CONCURRENT_UPLOADS,
                                           check_positive_int, **opts)
    answers["proxyUrl"] = _ask("Proxy URL", "--proxy-url", proxy_url, old.get("proxyUrl"),
                               FLAG_CHECKS["--proxy-url"], **opts)
    answers["proxySecret"] = _ask("Proxy secret", "--proxy-secret", proxy_secret, old.get("proxySecret"),
                                  lambda v: str(v), hide=True, **opts) or None
    if gateway_url is not None:
        answers["gatewayUrl"] = _optional_url("gateway URL")(gateway_url)
    _from_env(answers, "gatewayUrl", "KACHERY_GATEWAY_URL", gateway_url, _optional_url("gateway URL"))
    if kachery_cloud_dir is not None:
        answers["kacheryCloudDir"] = _directory(kachery_cloud_dir)
    _from_env(answers, "kacheryCloudDir", "KACHERY_CLOUD_DIR", kachery_cloud_dir, _directory)
    _from_env(answers, "kacheryDir", "KACHERY_DIR", None, _directory)
    if answers.get("kacheryZone") == DEFAULT_ZONE:
        answers.pop("kacheryZone")
    config = parse_config(answers, str(config_path))
    keys = _checked_keys(config, config_path, check)
    save_config(config, config_path)
    click.echo(f"Wrote {config_path}")
    _explain(config, keys)
    return config


def _checked_keys(config: ResourceConfig, config_path: Path, check: bool) -> ClientKeys:
    """The client keys (created if missing); with ``check``, every check first: a failure
    stops ``init`` before anything is written (exit 1), except a client not registered
    yet, which is the next step ``init`` explains."""
    store_dir = config.store_dir()
    if check:
        store = check_store(store_dir)
        if not store.ok:
            _fail([store])
    keys = load_client_keys(store_dir)
    if keys is None:
        keys, _ = ensure_client_keys(store_dir)
        click.echo(f"Created kachery-cloud client keys in {store_dir}")
    if check:
        from .doctor import run_checks

        results = servers.run(run_checks(config, keys, state_dir_for(config_path), doctor=False))
        for item in results:
            click.echo(item.line(), err=True)
        pending = ("registration", "upload rights")
        if any(not c.ok and c.name not in pending for c in results):
            _fail([])
    return keys


def _fail(checks: list[Check]) -> NoReturn:
    for item in checks:
        click.echo(item.line(), err=True)
    click.echo("Nothing was written: fix the above and run init again (or skip the checks "
               "with --no-check).", err=True)
    sys.exit(1)


def registration_url(gateway_url: str, keys: ClientKeys, zone: str) -> str:
    """The page of a kachery gateway where a signed-in user registers this client."""
    signature = keys.sign({"type": "addClient"})
    label = urllib.parse.quote(socket.gethostname())
    return (f"{gateway_url}/registerClient/{keys.client_id}?signature={signature}"
            f"&zone={urllib.parse.quote(zone)}&label={label}")


def _explain(config: ResourceConfig, keys: ClientKeys) -> None:
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
