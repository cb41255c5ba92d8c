"""CLI commands of the proxy: ``proxy`` (serve) and ``proxy tokens add|list|remove``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError
from .credentials import TokenStore
from .settings import DEFAULT_TOKENS_FILE, load_config_file, make_settings

_TOKENS_ENV = "KACHERY_PROXY_TOKENS_FILE"


@click.group(invoke_without_command=True)
@click.option("--host", default=None, help="Interface to listen on [127.0.0.1; 0.0.0.0 for public].")
@click.option("--port", type=int, envvar="PORT", default=None, help="TCP port [$PORT or 3030]; 0 = free.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="YAML file with any proxy setting (see docs/proxy.md).")
@click.option("--tokens-file", type=click.Path(dir_okay=False, path_type=Path), envvar=_TOKENS_ENV,
              default=None, help=f"Per-resource tokens [${_TOKENS_ENV} or ./{DEFAULT_TOKENS_FILE}].")
@click.option("--require-tokens", is_flag=True, default=None,
              help="Refuse the shared PROXY_SECRET: every resource needs its own token.")
@click.option("--nats-url", envvar="KACHERY_PROXY_NATS_URL", default=None,
              help="NATS server shared by several proxy instances [$KACHERY_PROXY_NATS_URL].")
@click.option("--instance-id", default=None, help="Name of this instance [random].")
@click.option("--max-wait-sec", type=float, default=None, help="Clamp of one HTTP wait [25].")
@click.option("--heartbeat-sec", type=float, default=None,
              help="WebSocket ping interval; a silent daemon is dropped after 1.5x [30].")
@click.option("--max-body-bytes", type=int, default=None, help="Largest request body [65536].")
@click.option("--max-frame-bytes", type=int, default=None, help="Largest daemon message [1 MiB].")
@click.option("--max-inflight-per-resource", type=int, default=None,
              help="Waiting requests per resource before 429 [1000].")
@click.option("--max-connections-per-ip", type=int, default=None,
              help="Open requests + sockets per client IP; 0 = no limit [1024].")
@click.option("--access-log", default=None, help="'-' (stderr), 'off', or a file [-].")
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
    settings = make_settings(file_values, overrides)
    if not settings.proxy_secret and not settings.require_tokens:
        raise ConfigError("no proxy secret: set the PROXY_SECRET environment variable "
                          "(e.g. `export PROXY_SECRET=$(openssl rand -hex 24)`), or run with "
                          "--require-tokens and issue per-resource tokens")
    from ..servers import run
    from .app import build_app
    from .serving import serve_proxy

    run(serve_proxy(build_app(settings), settings.host, settings.port))


def _store(tokens_file: Path | None) -> TokenStore:
    return TokenStore(tokens_file or Path(DEFAULT_TOKENS_FILE))


_tokens_file_option = click.option(
    "--tokens-file", type=click.Path(dir_okay=False, path_type=Path), envvar=_TOKENS_ENV,
    default=None, help=f"Token file [${_TOKENS_ENV} or ./{DEFAULT_TOKENS_FILE}].")


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
    store = _store(tokens_file)
    token = store.add(resource_name, zone, replace=replace)
    click.echo(f"token for {resource_name} (zone {zone}) saved hashed in {store.path}; "
               "put it in the daemon's proxySecret:", err=True)
    click.echo(token)


@tokens.command("list")
@_tokens_file_option
def tokens_list(tokens_file: Path | None) -> None:
    """List resource names that have a token (never the tokens)."""
    for name, entry in sorted(_store(tokens_file).entries().items()):
        click.echo(f"{name}\tzone={entry.zone}\tcreated={entry.created}")


@tokens.command("remove")
@click.argument("resource_name")
@_tokens_file_option
def tokens_remove(resource_name: str, tokens_file: Path | None) -> None:
    """Remove RESOURCE_NAME's token (the name falls back to the shared secret)."""
    _store(tokens_file).remove(resource_name)
    click.echo(f"removed the token of {resource_name}", err=True)


commands: list[click.Command] = [proxy]
