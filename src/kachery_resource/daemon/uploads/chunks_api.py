"""The gateway's chunk request types (extension ``chunkUpload``, docs/design-chunks.md),
sent through :meth:`.gateway.DaemonGateway.call` like every other gateway call."""

from __future__ import annotations

from typing import Any

from ...chunking import LIST_VERSION, ChunkList
from ...errors import GatewayError
from .gateway import DaemonGateway, UploadTarget

REQUEST_TYPES = frozenset({"initiateChunkList", "finalizeChunkList", "initiateChunkUpload",
                           "finalizeChunkUpload", "findChunks"})
MAX_INDICES = 64  # chunks per initiateChunkUpload


def offers_chunks(info: dict[str, Any]) -> bool:
    """Whether ``GET /api/info`` lists every chunk request type, for chunk lists of our
    version (the chunk sizes: a gateway of version 1 expects other ones)."""
    chunks = info.get("chunkUpload")
    return (isinstance(chunks, dict) and set(chunks.get("requestTypes") or []) >= REQUEST_TYPES
            and chunks.get("listVersion") == LIST_VERSION)


class ChunksApi:
    """``POST {gateway}/api/gateway`` for the chunk request types the daemon sends."""

    def __init__(self, gateway: DaemonGateway) -> None:
        self.gateway = gateway

    async def initiate_list(self, chunks: ChunkList, list_sha1: str, list_size: int) -> UploadTarget:
        data = await self._call("initiateChunkList", chunks, size=chunks.size,
                                listSha1=list_sha1, listSize=list_size)
        return self.gateway.upload_target(data, "initiateChunkList")

    async def finalize_list(self, chunks: ChunkList, object_key: str, list_sha1: str,
                            list_size: int) -> None:
        await self._call("finalizeChunkList", chunks, size=chunks.size, objectKey=object_key,
                         listSha1=list_sha1, listSize=list_size)

    async def initiate_chunks(self, chunks: ChunkList, indices: list[int]) -> dict[int, UploadTarget]:
        """Where to PUT each of ``indices`` (at most ``MAX_INDICES``)."""
        fields: dict[str, Any] = {"indices": indices}
        if await self.gateway.opts_in():
            fields["acceptsUploadHeaders"] = True
        data = await self._call("initiateChunkUpload", chunks, **fields)
        answer = data.get("chunks")
        if not (isinstance(answer, dict) and all(isinstance(v, dict) for v in answer.values())):
            raise GatewayError(f"gateway {self.gateway.url} answered initiateChunkUpload "
                               "without chunks")
        try:
            targets = {int(i): self.gateway.upload_target(t, "initiateChunkUpload")
                       for i, t in answer.items()}
        except ValueError:
            raise GatewayError(f"gateway {self.gateway.url} answered initiateChunkUpload "
                               "with chunk numbers that are not numbers") from None
        if set(targets) != set(indices):
            raise GatewayError(f"gateway {self.gateway.url} answered initiateChunkUpload for "
                               "other chunks than those asked for")
        return targets

    async def finalize_chunk(self, chunks: ChunkList, index: int, object_key: str) -> None:
        await self._call("finalizeChunkUpload", chunks, index=index, objectKey=object_key)

    async def _call(self, what: str, chunks: ChunkList, **fields: Any) -> dict[str, Any]:
        g = self.gateway
        return await g.call({"type": what, "hashAlg": "sha1", "hash": chunks.sha1,
                             "zone": g.zone, "chunkSize": chunks.chunk_size, **fields})
