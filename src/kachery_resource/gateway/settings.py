"""Gateway settings: the zones YAML file, or zero config (zone ``default`` on a local directory).

Example ``zones.yaml`` (every key but ``zones`` is optional)::

    storage: /srv/kachery            # default storage for zones that name none (DIR or s3://BUCKET/PREFIX)
    s3EndpointUrl: http://127.0.0.1:8333   # S3-compatible endpoint (else AWS_ENDPOINT_URL / AWS)
    publicUrl: https://gateway.example.org # base of signed URLs the local backend hands out
    timestampWindowSec: 125
    corsOrigins: ["*"]               # web pages that may call the API and download (browser CORS)
    zones:
      default:
        allowPublicDownload: true
        allowPublicUpload: false     # true: any *registered* client may upload
        autoApproveClients: false    # true: /registerClient approves at once (upload + download)
        onDemand: true               # findFile on a miss asks the zone's resources
        onDemandWaitSec: 25          # ... and waits at most this long for the upload
        resources: [https://proxy.example.org/r/lab1]   # asked besides announced resources
      lab.private:
        storage: s3://lab-bucket/kachery
        prefix: private
        allowPublicDownload: false
"""

from __future__ import annotations

import os
import re
from functools import partial
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigError
from ..settings_errors import explain

ZONE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
DEFAULT_ZONE = "default"
MAX_SINGLE_PUT = 5_000_000_000
STORAGE_FORMS = "a local directory (DIR or file:///DIR) or s3://BUCKET[/PREFIX]"
CORS_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\[\]:-]+")
RESOURCE_PATH = re.compile(r"/r/[A-Za-z0-9][A-Za-z0-9_.-]{0,199}/?$")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
FLAGS = {"storage": "--storage", "s3EndpointUrl": "--s3-endpoint-url", "publicUrl": "--public-url",
         "timestampWindowSec": "--timestamp-window", "accessLog": "--access-log"}
"""The command-line flag of each setting a flag can override (named in error messages)."""


def default_storage() -> str:
    """Where zero-config gateways keep their bytes: ``$KACHERY_GATEWAY_STORAGE`` (a DIR or
    s3://BUCKET/PREFIX, like --storage) or ~/.kachery-resource/gateway."""
    return os.environ.get("KACHERY_GATEWAY_STORAGE") or str(Path.home() / ".kachery-resource" / "gateway")


def check_storage(value: str | None) -> str | None:
    """Accept ``DIR``, ``file:///DIR`` or ``s3://BUCKET[/PREFIX]`` (empty: not set); raise
    ValueError otherwise."""
    if value is None or not value.strip():
        return None
    scheme = _SCHEME.match(value)
    if scheme is None or scheme.group(1) == "file":
        return value
    if scheme.group(1) != "s3":
        raise ValueError(f"{scheme.group(1)}:// storage is not supported; give {STORAGE_FORMS}")
    if not value[len("s3://"):].partition("/")[0]:
        raise ValueError("an S3 storage needs a bucket: s3://BUCKET[/PREFIX]")
    return value


def check_http_url(value: str | None, example: str) -> str | None:
    """Accept an ``http://`` or ``https://`` URL with a host (empty: not set); raise
    ValueError otherwise."""
    if value is None or not value.strip():
        return None
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"must be an http:// or https:// URL with a host, e.g. {example}")
    return value


def check_resource_url(value: str) -> str:
    """Accept ``http(s)://HOST[:PORT][/PATH]/r/NAME`` (a resource URL on a proxy)."""
    check_http_url(value, "https://proxy.example.org/r/NAME")
    path = urlsplit(value).path
    if len(value) > 1000 or not RESOURCE_PATH.search(path) or urlsplit(value).query:
        raise ValueError("must be a resource URL: PROXY_URL/r/RESOURCE_NAME, e.g. "
                         "https://proxy.example.org/r/lab1")
    return value.rstrip("/")


StorageUrl = Annotated[str | None, AfterValidator(check_storage)]
EndpointUrl = Annotated[str | None, AfterValidator(partial(check_http_url, example="http://127.0.0.1:8333"))]
PublicUrl = Annotated[str | None, AfterValidator(partial(check_http_url, example="https://gateway.example.org"))]
ResourceUrl = Annotated[str, AfterValidator(check_resource_url)]


class ZoneSettings(BaseModel):
    """One zone: where its objects live and who may read and write them."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    storage: StorageUrl = Field(None, description="DIR or s3://BUCKET/PREFIX; default: the top-level storage")
    prefix: str = Field("", description="extra key prefix for this zone inside the storage")
    s3_endpoint_url: EndpointUrl = Field(None, alias="s3EndpointUrl")
    allow_public_download: bool = Field(True, alias="allowPublicDownload",
                                        description="unregistered clients may download")
    allow_public_upload: bool = Field(False, alias="allowPublicUpload",
                                      description="every approved client may upload, not only those with the upload right")
    auto_approve_clients: bool = Field(False, alias="autoApproveClients",
                                       description="/registerClient approves at once, with upload and download rights")
    on_demand: bool = Field(True, alias="onDemand",
                            description="findFile on a miss asks the zone's resources for the file")
    on_demand_wait_sec: float = Field(25.0, alias="onDemandWaitSec", gt=0, le=300,
                                      description="longest a findFile waits for an on-demand upload")
    on_demand_max_in_flight: int = Field(64, alias="onDemandMaxInFlight", ge=1,
                                         description="hashes fetched on demand at once; further misses wait their turn")
    resources: list[ResourceUrl] = Field(default_factory=list, max_length=100,
                                         description="resource URLs (PROXY/r/NAME) asked besides announced ones")


class GatewaySettings(BaseModel):
    """Everything the gateway reads at start; the single table of its settings."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    storage: StorageUrl = Field(None, description="default storage of zones that name none")
    s3_endpoint_url: EndpointUrl = Field(None, alias="s3EndpointUrl")
    public_url: PublicUrl = Field(None, alias="publicUrl",
                                   description="base URL of the gateway as clients see it (signed URLs)")
    timestamp_window_sec: float = Field(125.0, alias="timestampWindowSec", gt=0)
    max_body_bytes: int = Field(65536, alias="maxBodyBytes", ge=1024)
    download_url_ttl_sec: int = Field(3600, alias="downloadUrlTtlSec", ge=1)
    upload_url_ttl_sec: int = Field(1800, alias="uploadUrlTtlSec", ge=1)
    max_upload_size: int = Field(MAX_SINGLE_PUT, alias="maxUploadSize", ge=0)
    staging_max_age_sec: int = Field(86400, alias="stagingMaxAgeSec", ge=60,
                                     description="unfinished uploads older than this are deleted")
    chunk_max_age_sec: int = Field(7 * 86400, alias="chunkMaxAgeSec", ge=60,
                                   description="chunks of a file never uploaded whole are deleted once "
                                               "none was written for this long")
    cleanup_interval_sec: float = Field(3600.0, alias="cleanupIntervalSec", gt=0)
    registry_cache_sec: float = Field(1.0, alias="registryCacheSec", ge=0)
    multipart_min_part_size: int = Field(5 * 1024**2, alias="multipartMinPartSize", ge=1,
                                         description="smallest part but the last (S3: 5 MiB)")
    multipart_max_part_size: int = Field(5 * 1024**3, alias="multipartMaxPartSize", ge=1)
    multipart_max_parts: int = Field(10000, alias="multipartMaxParts", ge=1, le=10000)
    multipart_max_size: int = Field(5 * 1024**4, alias="multipartMaxSize", ge=0,
                                    description="largest file uploaded in parts (S3: 5 TiB)")
    cors_origins: list[str] = Field(["*"], alias="corsOrigins",
                                    description="origins of web pages that may call the API and use "
                                                "signed /files/ URLs (CORS); \"*\": any page")
    announcement_ttl_sec: float = Field(90.0, alias="announcementTtlSec", ge=1,
                                        description="an announced resource is asked until this long after its "
                                                    "last renewal (daemons renew every third of it)")
    resources_cache_sec: float = Field(2.0, alias="resourcesCacheSec", ge=0,
                                       description="how long the list of a zone's resources is reused")
    negative_cache_sec: float = Field(10.0, alias="negativeCacheSec", ge=0,
                                      description="a hash every resource said it lacks is not asked again for this long")
    access_log: str = Field("-", alias="accessLog",
                            description="one JSON line per request: '-' (stderr), 'off', or a file")
    zones: dict[str, ZoneSettings] = Field(default_factory=dict)

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not CORS_ORIGIN.fullmatch(origin):
                raise ValueError(f"invalid origin {origin[:100]!r}: use \"*\" or scheme://host[:port], "
                                 "e.g. https://figurl.org")
        return origins

    @field_validator("zones")
    @classmethod
    def _zone_names(cls, zones: dict[str, ZoneSettings]) -> dict[str, ZoneSettings]:
        for name in zones:
            if not ZONE_NAME.fullmatch(name):
                raise ValueError(f"invalid zone name {name!r}: use letters, digits, '.', '_', '-'")
        return zones

    def zone_storage(self, name: str) -> str:
        """The storage URL of zone ``name``."""
        zone = self.zones[name]
        storage = zone.storage or self.storage
        if storage is None:
            raise ConfigError(f"zone {name!r} names no storage and there is no top-level `storage`")
        return storage

    def zone_endpoint(self, name: str) -> str | None:
        """The S3 endpoint of zone ``name`` (zone setting, top-level setting, or AWS_ENDPOINT_URL)."""
        return self.zones[name].s3_endpoint_url or self.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL")


def _relative_to(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make relative directory storages in a config file relative to the file's directory."""

    def fix(storage: object) -> object:
        if isinstance(storage, str) and storage.strip() and "://" not in storage \
                and not Path(storage).expanduser().is_absolute():
            return str(base / storage)
        return storage

    data = dict(data)
    if "storage" in data:
        data["storage"] = fix(data["storage"])
    zones = data.get("zones")
    if isinstance(zones, dict):
        data["zones"] = {name: ({**z, "storage": fix(z["storage"])} if isinstance(z, dict) and "storage" in z
                                else z) for name, z in zones.items()}
    return data


def load_settings(
    config: Path | None = None,
    *,
    storage: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> GatewaySettings:
    """Read ``config`` (if any), apply ``storage`` and other overrides, ensure a zone exists.

    With neither a config nor a storage: zone ``default`` on :func:`default_storage`.
    """
    data: dict[str, Any] = {}
    given = {k: v for k, v in {"storage": storage, **(overrides or {})}.items() if v is not None}
    if config is not None:
        try:
            loaded = yaml.safe_load(config.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read gateway config {config}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"gateway config {config} must be a YAML mapping")
        data = _relative_to(loaded, config.parent)
    data.update(given)
    if not data.get("zones"):
        data["zones"] = {DEFAULT_ZONE: {}}
    named = {k: FLAGS[k] for k in given if k in FLAGS}
    if not data.get("storage") and any(not (z or {}).get("storage") for z in data["zones"].values()):
        data["storage"] = default_storage()
        if os.environ.get("KACHERY_GATEWAY_STORAGE"):
            named["storage"] = "$KACHERY_GATEWAY_STORAGE"
    try:
        return GatewaySettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(explain(exc, GatewaySettings, program="gateway", docs="docs/gateway.md",
                                  config=config, named=named)) from None
