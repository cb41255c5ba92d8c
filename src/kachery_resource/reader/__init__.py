"""Lazy reading: ``open(uri)`` gives a seekable file whose bytes are fetched as they are read.

Modules, bottom up: ``cache`` (blocks under a byte cap), ``source`` (where a range's bytes
come from), ``fetcher`` (single flight, parallel ranges, sha1), ``remote_file`` (the file
object and its read-ahead), ``open`` (choosing the source). ``fsspec_fs`` registers the
``sha1`` and ``kachery`` protocols with fsspec (imported only by fsspec).
"""

from .open import open
from .remote_file import RemoteFile

__all__ = ["RemoteFile", "open"]
