"""Whether a chunk list may be trusted: signed (``chunking``'s one check) by a registered
client of the zone, for this very file (sha1, size, chunk size). Registration is asked of
the gateway once per signer and cached for the process."""

from __future__ import annotations

from ..chunking import ChunkList, read_signed_chunk_list
from ..client.gateway import GatewayClient
from ..errors import IntegrityError

_SIGNERS: dict[tuple[str, str, str], bool] = {}  # (gateway, zone, client id) -> registered


def trusted_chunk_list(doc: bytes, gateway: GatewayClient, sha1: str, size: int,
                       chunk_size: int) -> ChunkList:
    """The chunk list in ``doc``, or IntegrityError saying why it is not to be used."""
    chunks, signer = read_signed_chunk_list(doc, gateway.zone)
    if (chunks.sha1, chunks.size, chunks.chunk_size) != (sha1, size, chunk_size):
        raise IntegrityError(f"the chunk list is for sha1://{chunks.sha1} ({chunks.size} bytes), "
                             "not this file")
    key = (gateway.url, gateway.zone, signer)
    if key not in _SIGNERS:
        _SIGNERS[key] = gateway.client_registered(signer)
    if not _SIGNERS[key]:
        raise IntegrityError(f"the chunk list is signed by {signer}, which is not a registered "
                             f"client of zone {gateway.zone!r}")
    return chunks
