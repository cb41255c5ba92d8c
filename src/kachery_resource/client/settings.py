"""Where a client looks for files: read once from the environment kachery-cloud uses.

========================== ==================================================
variable                   meaning
========================== ==================================================
``KACHERY_CLOUD_DIR``      local store and cache (default ``~/.kachery-cloud``)
``KACHERY_GATEWAY_URL``    zone gateway (default the public kachery gateway)
``KACHERY_ZONE``           zone named in every request (default ``default``)
``KACHERY_RESOURCE_URL``   ``<proxy>/r/<resource>``: ask this resource on a miss
``KACHERY_CLOUD_CLIENT_ID`` / ``KACHERY_CLOUD_PRIVATE_KEY``  keys (else the PEM files)
``KACHERY_API_KEY``        use the kachery 2.x API (``/api/findFile``) with this key;
                           then ``KACHERY_BASE_URL`` is the gateway if
                           ``KACHERY_GATEWAY_URL`` is unset
========================== ==================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config import DEFAULT_GATEWAY_URL
from ..identity import ClientKeys, load_client_keys
from ..store import default_store_dir

DEFAULT_ZONE = "default"


@dataclass(frozen=True)
class ClientSettings:
    """Everything a client needs to find a file; build it with :meth:`from_env`."""

    store_dir: Path
    gateway_url: str
    zone: str
    resource_url: str | None
    keys: ClientKeys | None
    #: a kachery 2.x API key: ``findFile`` goes to ``/api/findFile`` with it
    api_key: str | None = None

    @classmethod
    def from_env(
        cls,
        env: dict[str, str] | None = None,
        *,
        store_dir: Path | str | None = None,
        gateway_url: str | None = None,
        zone: str | None = None,
        resource_url: str | None = None,
    ) -> ClientSettings:
        """Settings from ``env`` (default ``os.environ``); keyword arguments win over it."""
        env = dict(os.environ) if env is None else env
        root = Path(store_dir) if store_dir is not None else default_store_dir(env)
        api_key = env.get("KACHERY_API_KEY") or None
        chosen = gateway_url or env.get("KACHERY_GATEWAY_URL") or env.get("KACHERY_BASE_URL")
        if chosen is None:  # a key is for the gateway the user chose: never send it elsewhere
            api_key = None
        gateway = chosen or DEFAULT_GATEWAY_URL
        return cls(
            store_dir=root,
            gateway_url=gateway.rstrip("/"),
            zone=zone or env.get("KACHERY_ZONE") or DEFAULT_ZONE,
            resource_url=(resource_url or env.get("KACHERY_RESOURCE_URL") or None),
            keys=load_client_keys(root, env),
            api_key=api_key,
        )
