"""Which protocol a port speaks, asked only after a connection failed: the usual mistake is Triton's
HTTP port given to the gRPC client or the other way round, and both clients' own errors say so
badly (gRPC: "Socket closed"; aiohttp: the HTTP/2 frame's raw bytes as a bad status line)."""

from __future__ import annotations

import asyncio
import enum

SNIFF_TIMEOUT_S = 2.0
_H2_FRAME_TYPES = (0x04, 0x07)  # SETTINGS (a server's first frame) or GOAWAY (its answer to junk)


class Speaks(enum.StrEnum):
    HTTP1 = "HTTP/1.1"
    HTTP2 = "HTTP/2"
    TLS = "TLS"


def classify(first: bytes) -> Speaks | None:
    """The protocol of a server's first bytes after a plain HTTP/1.0 request, if recognisable."""
    if first.startswith(b"HTTP/"):
        return Speaks.HTTP1
    if len(first) >= 9 and first[3] in _H2_FRAME_TYPES and first[5] & 0x80 == 0:
        return Speaks.HTTP2  # a frame header: 24-bit length, type, flags, stream id (top bit reserved)
    if first[:1] == b"\x15" and first[1:2] == b"\x03":  # a TLS alert record
        return Speaks.TLS
    return None


async def sniff(host: str, port: int, timeout_s: float = SNIFF_TIMEOUT_S) -> Speaks | None:
    """Send ``GET / HTTP/1.0`` and classify the answer; None when nothing recognisable came back."""
    writer = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET / HTTP/1.0\r\n\r\n")  # HTTP/1.0 needs no Host
            await writer.drain()
            return classify(await reader.read(16))
    except (OSError, TimeoutError):
        return None
    finally:
        if writer is not None:
            writer.close()
