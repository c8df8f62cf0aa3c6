"""A content-encoded upstream body, decoded in bounded steps (issue 16).

httpx2 decodes each network read whole: 16 KiB of gzip can inflate to 16 MiB of blank lines, decoded
and split in one go while every other stream waits. Here no step yields more than STEP bytes, and the
event loop gets a turn between the steps of one read. Corrupt data raises UpstreamMalformed.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

import anyio.lowlevel

from llm_sse_proxy.proxy.errors import UpstreamMalformed

STEP = 64 * 1024
# gzip; deflate as RFC 9110 means it (zlib-wrapped), which servers send, with a gzip header accepted too.
_WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS | 32}


def handles(encoding: str) -> bool:
    """True for the content-encodings decoded here; httpx2 decodes the others (br, zstd) itself."""
    return encoding in _WBITS


async def decoded(raw: AsyncIterator[bytes], encoding: str, step: int = STEP) -> AsyncIterator[bytes]:
    """The decoded body of `raw`, in pieces of at most `step` bytes."""
    inflater = zlib.decompressobj(_WBITS[encoding])
    async for chunk in raw:
        while chunk:
            try:
                piece = inflater.decompress(chunk, step)
            except zlib.error:
                raise UpstreamMalformed(f"the upstream sent a corrupt {encoding} body") from None
            chunk = inflater.unconsumed_tail
            if piece:
                yield piece
            if chunk:
                await anyio.lowlevel.checkpoint()  # more of this read to inflate: let the other streams run
    if tail := inflater.flush():
        yield tail
