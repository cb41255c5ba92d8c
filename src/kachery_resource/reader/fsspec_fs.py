"""An fsspec filesystem for kachery URIs, registered for the ``sha1`` and ``kachery``
protocols through the ``fsspec.specs`` entry point (see pyproject.toml).

``fsspec.open("sha1://HASH")``, ``pandas.read_csv("sha1://HASH")``,
``pandas.read_parquet("sha1://HASH")`` and other fsspec users then read kachery files
lazily through :func:`kachery_resource.open`. fsspec only
splits protocols at ``://``, so the kachery form is written ``kachery://ZONE:sha1:HASH``
in an fsspec URL (``kachery:ZONE:sha1:HASH`` works with this filesystem's own methods).
Storage options: ``gateway_url``, ``zone``, ``resource_url``, ``store_dir`` (else the
environment, as for every client call), and ``timeout``, ``block_size``, ``cache_size``.
"""

from __future__ import annotations

from typing import Any

from fsspec.spec import AbstractFileSystem

from ..client import ClientSettings
from .open import open as open_uri
from .remote_file import RemoteFile


class KacheryFileSystem(AbstractFileSystem):  # type: ignore[misc]  # fsspec is untyped
    """Read-only files named by content hash; paths are ``HASH`` or ``ZONE:sha1:HASH``."""

    protocol = ("sha1", "kachery")
    root_marker = ""
    #: settings come from the environment at each call, as for every client call
    cachable = False

    def __init__(self, gateway_url: str | None = None, zone: str | None = None,
                 resource_url: str | None = None, store_dir: str | None = None,
                 timeout: float | None = None, **options: Any) -> None:
        self._reader_options = {k: options.pop(k) for k in ("block_size", "cache_size")
                                if k in options}
        super().__init__(**options)
        self.settings = ClientSettings.from_env(gateway_url=gateway_url, zone=zone,
                                                resource_url=resource_url, store_dir=store_dir)
        self.timeout = timeout

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        """``sha1://HASH?label=…`` → ``HASH``; ``kachery://Z:sha1:HASH`` or
        ``kachery:Z:sha1:HASH`` → ``Z:sha1:HASH``."""
        text = str(path[0] if isinstance(path, list) else path)
        for prefix in ("sha1://", "kachery://", "kachery:"):
            if text.startswith(prefix):
                text = text[len(prefix):]
                break
        return text.split("?", 1)[0].rstrip("/")

    @staticmethod
    def _uri(path: str) -> str:
        stripped = KacheryFileSystem._strip_protocol(path)
        return f"kachery:{stripped}" if ":" in stripped else f"sha1://{stripped}"

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, autocommit: bool = True,
              cache_options: Any = None, **kwargs: Any) -> RemoteFile:
        if mode != "rb":
            raise NotImplementedError(f"kachery files are read-only (mode {mode!r}); open with 'rb'")
        options = dict(self._reader_options)
        if isinstance(block_size, int) and block_size > 0:
            options["block_size"] = block_size
        return open_uri(self._uri(path), settings=self.settings, timeout=self.timeout, **options)

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        with self._open(path) as f:
            size = f.size
        return {"name": self._strip_protocol(path), "size": size, "type": "file"}

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        info = self.info(path)
        return [info] if detail else [info["name"]]

    def cat_file(self, path: str, start: int | None = None, end: int | None = None,
                 **kwargs: Any) -> bytes:
        with self._open(path) as f:
            begin = 0 if start is None else (start if start >= 0 else f.size + start)
            stop = f.size if end is None else (end if end >= 0 else f.size + end)
            return f.read_at(begin, max(0, stop - begin))

    def ukey(self, path: str) -> str:
        return self._strip_protocol(path)
