"""CLI commands of the proxy: ``proxy`` (serve) and ``proxy tokens add|list|remove``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from ..config import check_resource_name, check_zone
from ..errors import ConfigError
from ..options import Group, option
from .credentials import TokenStore
from .settings import DEFAULT_TOKENS_FILE, ProxySettings, load_config_file, make_settings

_TOKENS_ENV = "KACHERY_PROXY_TOKENS_FILE"


def _default(field: str) -> str:
    """A setting's default as shown in ``--help`` (from the model, so they cannot drift)."""
    value = ProxySettings.model_fields[field].default
    return f"{value:g}" if isinstance(value, float) else str(value)


@click.group(cls=Group, invoke_without_command=True)
@option("--host", default=None, show_default=_default("host"),
         help="Interface to listen on (0.0.0.0 for a public server).")
@option("--port", envvar="PORT", default=None, metavar="INTEGER",
         show_default=f"$PORT or {_default('port')}", help="TCP port; 0 = any free port.")
@option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
         default=None, help="YAML file with any proxy setting (see docs/proxy.md).")
@option("--tokens-file", type=click.Path(dir_okay=False, path_type=Path), envvar=_TOKENS_ENV,
         default=None, show_default=f"${_TOKENS_ENV} or ./{DEFAULT_TOKENS_FILE}",
         help="Per-resource tokens.")
@option("--require-tokens", is_flag=True, default=None,
         help="Refuse the shared PROXY_SECRET: every resource needs its own token.")
@option("--nats-url", envvar="KACHERY_PROXY_NATS_URL", default=None,
         show_default="$KACHERY_PROXY_NATS_URL or none (one instance)",
         help="NATS server shared by several proxy instances.")
@option("--instance-id", default=None, show_default="random",
         help="Name of this instance.")
@option("--max-wait-sec", type=float, default=None, show_default=_default("max_wait_sec"),
         help="Clamp of one HTTP wait.")
@option("--heartbeat-sec", type=float, default=None, show_default=_default("heartbeat_sec"),
         help="WebSocket ping interval; a silent daemon is dropped after 1.5x.")
@option("--max-body-bytes", type=int, default=None, show_default=_default("max_body_bytes"),
         help="Largest request body.")
@option("--max-frame-bytes", type=int, default=None,
         show_default=f"{_default('max_frame_bytes')} = 1 MiB", help="Largest daemon message.")
@option("--max-inflight-per-resource", type=int, default=None,
         show_default=_default("max_inflight_per_resource"),
         help="Waiting requests per resource before 429.")
@option("--max-connections-per-ip", type=int, default=None,
         show_default=_default("max_connections_per_ip"),
         help="Open requests + sockets per client IP; 0 = no limit.")
@option("--access-log", default=None, show_default=f"{_default('access_log')} (stderr)",
         help="'-' (stderr), 'off', or a file (JSON lines, appended).")
@click.pass_context
def proxy(ctx: click.Context, /, config_file: Path | None, **flags: Any) -> None:
    """Run the relay between kachery clients and resource daemons (PROXY_SECRET from env)."""
    if ctx.invoked_subcommand is not None:
        return
    file_values = load_config_file(config_file) if config_file else {}
    overrides = dict(flags)
    overrides["proxy_secret"] = os.environ.get("PROXY_SECRET") or None
    if overrides["tokens_file"] is None and "tokensFile" not in file_values \
            and "tokens_file" not in file_values:
        overrides["tokens_file"] = Path(DEFAULT_TOKENS_FILE)
    settings = make_settings(file_values, overrides, names=_names_given(ctx),
                             config_file=config_file)
    if not settings.proxy_secret and not settings.require_tokens:
        raise ConfigError("no proxy secret: set the PROXY_SECRET environment variable "
                          "(e.g. `export PROXY_SECRET=$(openssl rand -hex 24)`), or run with "
                          "--require-tokens and issue per-resource tokens")
    from ..servers import run
    from .app import build_app
    from .serving import serve_proxy

    run(serve_proxy(build_app(settings), settings.host, settings.port))


def _names_given(ctx: click.Context) -> dict[str, str]:
    """How the user gave each setting: its flag, or ``$VAR`` when it came from the environment."""
    names = {"proxy_secret": "$PROXY_SECRET"}
    for param in ctx.command.params:
        if param.name is None or not isinstance(param, click.Option):
            continue
        from_env = ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT
        if from_env and isinstance(param.envvar, str):
            names[param.name] = f"${param.envvar}"
        else:
            names[param.name] = param.opts[0]
    return names


def _store(tokens_file: Path | None) -> TokenStore:
    return TokenStore(tokens_file or Path(DEFAULT_TOKENS_FILE))


_tokens_file_option = option(
    "--tokens-file", type=click.Path(dir_okay=False, path_type=Path), envvar=_TOKENS_ENV,
    default=None, show_default=f"${_TOKENS_ENV} or ./{DEFAULT_TOKENS_FILE}", help="Token file.")


@proxy.group()
def tokens() -> None:
    """Per-resource credentials (stored hashed; the token is shown once)."""


@tokens.command("add")
@click.argument("resource_name")
@click.option("--zone", default="default", show_default=True, help="Zone the resource is bound to.")
@click.option("--replace", is_flag=True, help="Rotate: replace an existing token.")
@_tokens_file_option
def tokens_add(resource_name: str, zone: str, replace: bool, tokens_file: Path | None) -> None:
    """Issue a token for RESOURCE_NAME; prints the token (only now) on stdout."""
    try:  # the same rules as the daemon's `init`: a token for another name could never be used
        resource_name, zone = check_resource_name(resource_name), check_zone(zone)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    store = _store(tokens_file)
    token = store.add(resource_name, zone, replace=replace)
    click.echo(f"token for {resource_name} (zone {zone}) saved hashed in {store.path}; "
               "put it in the daemon's proxySecret:", err=True)
    click.echo(token)


@tokens.command("list")
@_tokens_file_option
def tokens_list(tokens_file: Path | None) -> None:
    """List resource names that have a token (never the tokens)."""
    store = _store(tokens_file)
    entries = store.entries()
    if not entries:
        click.echo(f"no tokens in {store.path}", err=True)
    for name, entry in sorted(entries.items()):
        click.echo(f"{name}\tzone={entry.zone}\tcreated={entry.created}")


@tokens.command("remove")
@click.argument("resource_name")
@_tokens_file_option
def tokens_remove(resource_name: str, tokens_file: Path | None) -> None:
    """Remove RESOURCE_NAME's token (the name falls back to the shared secret)."""
    _store(tokens_file).remove(resource_name)
    click.echo(f"removed the token of {resource_name}", err=True)


commands: list[click.Command] = [proxy]
