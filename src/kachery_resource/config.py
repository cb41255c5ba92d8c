"""``kachery-resource.yaml``: the resource daemon's settings (pydantic) and env overrides.

The five keys written by the old TypeScript tool keep their names and meaning, so a file
it wrote loads unchanged::

    resourceName: example_resource
    kacheryZone: franklab.default     # absent or "." means the zone "default"
    maxConcurrentUploads: 2
    proxyUrl: https://proxy.example.org
    proxySecret: s3cret

New keys are optional. The keys below (:data:`KNOWN_KEYS`) are the whole table: any other
key is refused with an error naming it and the nearest valid key, so a misspelled
setting never passes silently (the old tool wrote only the first five, so its files load).
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError

CONFIG_FILE_NAME = "kachery-resource.yaml"
DEFAULT_ZONE = "default"
DEFAULT_GATEWAY_URL = "https://kachery-gateway.figurl.org"
DEFAULT_MAX_CONCURRENT_UPLOADS = 2

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}")
_ZONE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}")


def check_resource_name(value: str) -> str:
    """Return ``value`` if it is a valid resource name, else raise ValueError."""
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"invalid resource name {value!r}: use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit (at most 200 characters)"
        )
    return value


def check_zone(value: str) -> str:
    """Return the zone name (``.`` or empty means ``default``), else raise ValueError."""
    if value in ("", "."):
        return DEFAULT_ZONE
    if not _ZONE.fullmatch(value):
        raise ValueError(
            f"invalid zone {value!r}: use letters, digits, '_', '-' and '.' (or '.' for default)"
        )
    return value


def check_url(value: str, what: str = "URL") -> str:
    """Return ``value`` without a trailing slash if it is an http(s) URL, else ValueError."""
    value = value.strip()
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
        raise ValueError(f"invalid {what} {value!r}: expected http://HOST[:PORT] or https://…")
    return value.rstrip("/")


def check_positive_int(value: object) -> int:
    """Return ``value`` as an int ≥ 1, else raise ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"expected a positive integer, got {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return number


#: the large-upload keys, validated by the daemon's upload settings (docs/daemon.md)
UPLOAD_KEYS = frozenset({
    "multipartThreshold", "multipartPartSize", "multipartParallelParts",
    "multipartParallelBodies", "uploadStallSec", "multipartPartTries", "multipartHashLocally",
})


class ResourceConfig(BaseModel):
    """Every setting of ``kachery-resource share``; the single table of settings."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    resourceName: str = Field(description="name clients use: {proxyUrl}/r/{resourceName}")
    kacheryZone: str | None = Field(
        default=None, description="kachery zone; absent, empty or '.' means 'default'"
    )
    maxConcurrentUploads: int = Field(
        default=DEFAULT_MAX_CONCURRENT_UPLOADS, description="uploads running at once; others queue"
    )
    proxyUrl: str = Field(description="URL of the kachery-resource proxy")
    proxySecret: str | None = Field(
        default=None, description="proxy secret (shared or per-resource credential)"
    )
    gatewayUrl: str | None = Field(
        default=None,
        description="zone gateway; env KACHERY_GATEWAY_URL overrides; default the public gateway",
    )
    kacheryCloudDir: str | None = Field(
        default=None,
        description="the kachery-cloud store; env KACHERY_CLOUD_DIR overrides; default ~/.kachery-cloud",
    )
    kacheryDir: str | None = Field(
        default=None,
        description="a kachery 2.x local store also served; env KACHERY_DIR overrides; "
                    "default ~/.kachery",
    )

    uploadWholeAfterRanges: bool = Field(
        default=True,
        description="after a file's first fileRanges request, upload the whole file in the "
                    "background (behind every chunk) so later reads are plain bucket reads",
    )

    @field_validator("resourceName")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_resource_name(v)

    @field_validator("kacheryZone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        return None if v is None else check_zone(v)

    @field_validator("maxConcurrentUploads", mode="before")
    @classmethod
    def _max(cls, v: object) -> int:
        return check_positive_int(v)

    @field_validator("proxyUrl")
    @classmethod
    def _proxy(cls, v: str) -> str:
        return check_url(v, "proxy URL")

    @field_validator("gatewayUrl")
    @classmethod
    def _gateway(cls, v: str | None) -> str | None:
        return None if v is None else check_url(v, "gateway URL")

    @property
    def zone(self) -> str:
        """The zone name, ``default`` when none is set."""
        return self.kacheryZone or DEFAULT_ZONE

    @property
    def resource_url(self) -> str:
        """What clients set as ``KACHERY_RESOURCE_URL``."""
        return f"{self.proxyUrl}/r/{self.resourceName}"

    def gateway_url(self, env: dict[str, str] | None = None) -> str:
        """The gateway: env ``KACHERY_GATEWAY_URL``, else ``gatewayUrl``, else the public one."""
        env = dict(os.environ) if env is None else env
        value = env.get("KACHERY_GATEWAY_URL") or self.gatewayUrl or DEFAULT_GATEWAY_URL
        try:
            return check_url(value, "gateway URL")
        except ValueError as exc:
            raise ConfigError(f"{exc}; fix KACHERY_GATEWAY_URL or gatewayUrl") from None

    def gateway_source(self, env: dict[str, str] | None = None) -> str:
        """Where :meth:`gateway_url` came from: the environment, the file, or the default."""
        env = dict(os.environ) if env is None else env
        if env.get("KACHERY_GATEWAY_URL"):
            return "from KACHERY_GATEWAY_URL"
        return "from kachery-resource.yaml" if self.gatewayUrl else "the hosted default"

    def store_dir(self, env: dict[str, str] | None = None) -> Path:
        """The store: env ``KACHERY_CLOUD_DIR``, else ``kacheryCloudDir``, else ~/.kachery-cloud."""
        env = dict(os.environ) if env is None else env
        value = env.get("KACHERY_CLOUD_DIR") or self.kacheryCloudDir
        return Path(value).expanduser() if value else Path.home() / ".kachery-cloud"

    def kachery_dir(self, env: dict[str, str] | None = None) -> Path:
        """The kachery 2.x store: env ``KACHERY_DIR``, else ``kacheryDir``, else ~/.kachery."""
        env = dict(os.environ) if env is None else env
        value = env.get("KACHERY_DIR") or self.kacheryDir
        return Path(value).expanduser() if value else Path.home() / ".kachery"

    def store_source(self, env: dict[str, str] | None = None) -> str:
        """Where :meth:`store_dir` came from."""
        env = dict(os.environ) if env is None else env
        if env.get("KACHERY_CLOUD_DIR"):
            return "from KACHERY_CLOUD_DIR"
        return "from kachery-resource.yaml" if self.kacheryCloudDir else "the default"

    def check_zone_env(self, env: dict[str, str] | None = None) -> None:
        """Raise ConfigError when ``KACHERY_ZONE`` names a different zone than the config."""
        env = dict(os.environ) if env is None else env
        env_zone = env.get("KACHERY_ZONE") or DEFAULT_ZONE
        if env_zone != self.zone:
            raise ConfigError(
                f"KACHERY_ZONE is {env_zone!r} but kachery-resource.yaml says zone {self.zone!r}; "
                "set KACHERY_ZONE to match, or run `kachery-resource init` again"
            )

    def to_yaml_dict(self) -> dict[str, Any]:
        """The mapping to write: old keys first, unset optional keys left out."""
        data: dict[str, Any] = {"resourceName": self.resourceName}
        if self.kacheryZone and self.kacheryZone != DEFAULT_ZONE:
            data["kacheryZone"] = self.kacheryZone
        data["maxConcurrentUploads"] = self.maxConcurrentUploads
        data["proxyUrl"] = self.proxyUrl
        if self.proxySecret:
            data["proxySecret"] = self.proxySecret
        if self.gatewayUrl:
            data["gatewayUrl"] = self.gatewayUrl
        if self.kacheryCloudDir:
            data["kacheryCloudDir"] = self.kacheryCloudDir
        if self.kacheryDir:
            data["kacheryDir"] = self.kacheryDir
        if not self.uploadWholeAfterRanges:
            data["uploadWholeAfterRanges"] = False
        data.update({k: v for k, v in (self.model_extra or {}).items() if v is not None})
        return data


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


#: every key kachery-resource.yaml may hold
KNOWN_KEYS = frozenset(ResourceConfig.model_fields) | UPLOAD_KEYS


def check_known_keys(data: dict[Any, Any], source: str = "config") -> None:
    """Raise ConfigError naming every key that is not a setting, with the nearest valid one."""
    problems = []
    for key in data:
        if key in KNOWN_KEYS:
            continue
        near = difflib.get_close_matches(str(key), sorted(KNOWN_KEYS), n=1, cutoff=0.6)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        problems.append(f"unknown key {str(key)!r}{hint}")
    if problems:
        raise ConfigError(f"{source}: {'; '.join(problems)}; the valid keys are listed in "
                          "docs/daemon.md (kachery-resource.yaml)")


def parse_config(data: object, source: str = "config") -> ResourceConfig:
    """Validate a loaded YAML mapping; raise ConfigError that names the bad key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a YAML mapping of settings")
    check_known_keys(data, source)
    # the old tool could write `kacheryZone: null`; treat null like absent
    cleaned = {k: v for k, v in data.items() if v is not None}
    for key in ("resourceName", "proxyUrl", "proxySecret", "kacheryZone", "gatewayUrl",
                "kacheryCloudDir", "kacheryDir"):
        if key in cleaned and not isinstance(cleaned[key], str):
            cleaned[key] = str(cleaned[key])
    try:
        return ResourceConfig.model_validate(cleaned)
    except ValidationError as exc:
        missing = [str(e["loc"][0]) for e in exc.errors() if e["type"] == "missing"]
        if missing:
            raise ConfigError(
                f"{source} lacks {', '.join(missing)}; run `kachery-resource init`"
            ) from None
        raise ConfigError(f"{source}: {_first_error(exc)}") from None


def load_config(path: Path | str) -> ResourceConfig:
    """Read ``kachery-resource.yaml``; ConfigError if missing or invalid."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"no {path} here; run `kachery-resource init` in this directory first "
            "(or pass --config PATH)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return parse_config(data, str(path))


def load_config_defaults(path: Path | str) -> dict[str, Any]:
    """The raw settings of an existing file for use as ``init`` defaults ({} if none)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def save_config(config: ResourceConfig, path: Path | str) -> None:
    """Write ``config`` to ``path`` with mode 0600 (it holds the proxy secret)."""
    path = Path(path)
    text = yaml.safe_dump(config.to_yaml_dict(), sort_keys=False, allow_unicode=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
