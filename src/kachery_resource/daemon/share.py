"""``kachery-resource share``: check the setup, then serve the resource until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

import aiohttp

from .. import servers
from ..chunking import ChunkRecords
from ..config import DEFAULT_GATEWAY_URL, ResourceConfig
from ..errors import FileChangedError, GatewayError, KeysError
from ..identity import ClientKeys, load_client_keys
from ..messages import UploadState
from ..store import LocalFile, LocalStore
from .announce import Announcer
from .connection import ProxyConnection
from .jobs import JobManager, UploadJob
from .ranges import RangeJobs
from .state import ShareState
from .uploads.chunks import ChunksPlan
from .uploads.gateway import DaemonGateway
from .uploads.journal import UploadJournal
from .uploads.multipart import MultipartPlan, MultipartSettings
from .uploads.retry import TransientError
from .uploads.uploader import GatewayUploader

log = logging.getLogger("kachery_resource.daemon")


def require_keys(store_dir: Path, env: dict[str, str] | None = None) -> ClientKeys:
    """The daemon's client keys; KeysError telling what to run when there are none."""
    keys = load_client_keys(store_dir, env)
    if keys is None:
        raise KeysError(
            f"no kachery-cloud client keys in {store_dir}; run `kachery-resource init` "
            "(or set KACHERY_CLOUD_CLIENT_ID and KACHERY_CLOUD_PRIVATE_KEY)"
        )
    return keys


async def check_registration(gateway: DaemonGateway) -> None:
    """Refuse to start when the gateway says our client id is not registered."""
    try:
        info = await gateway.client_info()
    except TransientError as exc:
        log.warning("cannot check the client registration now: %s", exc)
        return
    if info is None:
        raise GatewayError(
            f"the gateway {gateway.url} does not know this daemon's client id "
            f"{gateway.keys.client_id} in zone {gateway.zone!r}; register it first "
            "(see `kachery-resource init`, or on a self-hosted gateway: `kachery-resource "
            f"gateway clients add {gateway.keys.client_id} --upload --download …`)"
        )
    log.info("client %s is registered with %s", gateway.keys.client_id, gateway.url)


def say_where(config: ResourceConfig, store: LocalStore, env: dict[str, str] | None = None) -> None:
    """Log which gateway and which store ``share`` uses, and where each setting came from;
    loudly when the gateway is the hosted default (a forgotten KACHERY_GATEWAY_URL)."""
    gateway, source = config.gateway_url(env), config.gateway_source(env)
    log.info("gateway %s (%s); store %s (%s)%s", gateway, source, store.root,
             config.store_source(env),
             "".join(f", and the kachery 2.x store {other.root}" for other in store.also))
    if gateway == DEFAULT_GATEWAY_URL and not config.gatewayUrl:
        log.warning("\n" + "!" * 78 + "\n!! no gateway is set: uploads go to the HOSTED DEFAULT "
                    f"gateway {DEFAULT_GATEWAY_URL}\n!! if your zone has its own gateway, set "
                    "gatewayUrl with `kachery-resource init --gateway-url URL` (or "
                    "KACHERY_GATEWAY_URL)\n" + "!" * 78)


async def serve(config: ResourceConfig, store: LocalStore, keys: ClientKeys, gateway_url: str,
                state_dir: Path | None = None) -> None:
    """Run the daemon until SIGINT/SIGTERM; running uploads are aborted on the way out.

    ``state_dir`` holds the multipart upload journal (none: large uploads do not resume
    after a crash) and the state ``kachery-resource status`` reads.
    """
    multipart_settings = MultipartSettings.from_mapping(config.model_extra)
    journal = UploadJournal.in_state_dir(state_dir) if state_dir is not None else None
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(connector=connector) as session:
        gateway = DaemonGateway(session, gateway_url, keys, config.zone)
        await check_registration(gateway)

        async def resolve(sha1: str) -> LocalFile | None:
            try:  # quick: a store copy or an unchanged linked file needs only stats
                return store.resolve(sha1, verify_linked=False)
            except FileChangedError:  # maybe only the mtime moved: re-hash, off the loop
                return await asyncio.to_thread(store.resolve, sha1)

        uploader = GatewayUploader(gateway, MultipartPlan(gateway, multipart_settings, journal))
        state = ShareState(state_dir, proxyUrl=config.proxyUrl,
                           resourceName=config.resourceName, zone=config.zone,
                           gatewayUrl=gateway_url, storeDir=str(store.root))
        jobs = JobManager(resolve, uploader, config.maxConcurrentUploads,
                          is_absent=lambda sha1: not store.has(sha1),
                          on_finished=lambda job: _account(state, job))
        state.in_flight = lambda: jobs.running
        ranges = RangeJobs(resolve, ChunkRecords(store.root), ChunksPlan(gateway), jobs,
                           upload_whole=config.uploadWholeAfterRanges)
        connection = ProxyConnection(config, jobs, session, on_state=state.connection,
                                     ranges=ranges)
        log.info("sharing %s as %r in zone %r (%d concurrent uploads)",
                 config.proxyUrl, config.resourceName, config.zone, config.maxConcurrentUploads)
        main = asyncio.create_task(connection.run_forever())
        publisher = asyncio.create_task(state.publish_forever()) if state_dir else None
        announcer = Announcer(gateway, config.resource_url, connection.connected)
        announcer.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, main.cancel)
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await main
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            if publisher is not None:
                publisher.cancel()
                state.remove()
            await ranges.close()
            await jobs.close()
            await announcer.stop()
            uploader.close()
            log.info("stopped")


def _account(state: ShareState, job: UploadJob) -> None:
    if job.state is UploadState.COMPLETED:
        state.served((job.size or 0) if job.sent else 0)
    elif job.state is UploadState.ERROR and job.error:
        state.failed(f"sha1://{job.sha1}", job.error)


def run(config: ResourceConfig, store_dir: Path | None = None,
        state_dir: Path | None = None) -> None:
    """Check the config against the environment, then serve (blocking)."""
    config.check_zone_env()
    store = LocalStore(store_dir or config.store_dir(), also=[config.kachery_dir()])
    keys = require_keys(store.root, dict(os.environ))
    say_where(config, store)
    servers.run(serve(config, store, keys, config.gateway_url(), state_dir))
