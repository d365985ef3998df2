"""HTTP/2 header blocks of a gRPC call: HPACK encoding of requests, decoding of responses, and what
a response's ``:status``, ``grpc-status`` or RST_STREAM code means as a gRPC status and error reason.

Responses are not decoded beyond their header blocks: HPACK-decoding every block is what keeps the
dynamic table right, and a small cache makes the repeated, fully indexed blocks of a busy connection
(``88c0bf`` then ``be``) cost one dict lookup.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import grpc
import hpack

from loadgen.transports import reasons

HEADER_CACHE_SIZE = 256

_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}
# gRPC's mapping of RST_STREAM codes and of HTTP statuses without grpc-status (doc/PROTOCOL-HTTP2.md)
RESET_CODES = {7: grpc.StatusCode.UNAVAILABLE, 8: grpc.StatusCode.CANCELLED}
RESET_CODES |= {11: grpc.StatusCode.RESOURCE_EXHAUSTED, 12: grpc.StatusCode.PERMISSION_DENIED}
_HTTP_CODES = {400: grpc.StatusCode.INTERNAL, 401: grpc.StatusCode.UNAUTHENTICATED}
_HTTP_CODES |= {403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.UNIMPLEMENTED}
_HTTP_CODES |= {code: grpc.StatusCode.UNAVAILABLE for code in (429, 502, 503, 504)}


def encode_headers(headers: Sequence[tuple[str, str]]) -> bytes:
    """HPACK without touching the dynamic table: static-table indices where they match exactly,
    literals never indexed otherwise, so the block can be sent any number of times unchanged."""
    return hpack.Encoder().encode([hpack.NeverIndexedHeaderTuple(name, value) for name, value in headers])


class Head(NamedTuple):
    """What a response header block means to a call."""

    http_status: int  # 0: no :status in the block (trailers)
    grpc_status: int  # -1: no grpc-status in the block
    reason: str | None  # the error reason if the call ends with this block


def status_reason(code: grpc.StatusCode, details: str) -> str:
    """The reason string loadgen's grpc.aio transport gives for the same status."""
    return reasons.status_reason(code.name, details)


def interpret(headers: Iterable[tuple[bytes | str, bytes | str]]) -> Head:
    http_status, grpc_status, message = 0, -1, ""
    for name, value in headers:
        if name == b":status":
            http_status = int(value)
        elif name == b"grpc-status":
            grpc_status = int(value)
        elif name == b"grpc-message":
            message = urllib.parse.unquote_to_bytes(value).decode("utf-8", "replace")
    reason: str | None
    if grpc_status == 0:
        reason = None
    elif grpc_status > 0:
        reason = status_reason(_STATUS_CODES.get(grpc_status, grpc.StatusCode.UNKNOWN), message)
    elif http_status not in (0, 200):
        code = _HTTP_CODES.get(http_status, grpc.StatusCode.UNKNOWN)
        reason = status_reason(code, f"HTTP status {http_status} without grpc-status")
    else:
        reason = status_reason(grpc.StatusCode.INTERNAL, "response ended without grpc-status")
    return Head(http_status, grpc_status, reason)


def only_indexed(block: bytes) -> bool:
    """True if every field of the HPACK block is an indexed field (RFC 7541 §6.1): decoding it
    reads the dynamic table but never changes it."""
    i, n = 0, len(block)
    while i < n:
        byte = block[i]
        if byte < 0x80:
            return False
        i += 1
        if byte & 0x7F == 0x7F:  # the index continues in 7-bit groups
            while i < n and block[i] & 0x80:
                i += 1
            i += 1
    return True


class HeaderDecoder:
    """HPACK decoding of every response block, in order, with a cache for blocks that only index.

    A fully indexed block does not change the dynamic table, so its meaning stays valid
    until a block that may change the table is decoded; then the cache is cleared.
    """

    def __init__(self) -> None:
        self.decoder = hpack.Decoder()
        self.cache: dict[bytes, Head] = {}

    def decode(self, block: bytes) -> Head:
        head = self.cache.get(block)
        if head is not None:
            return head
        head = interpret(self.decoder.decode(block, raw=True))
        if not only_indexed(block):
            self.cache.clear()
        elif len(self.cache) < HEADER_CACHE_SIZE:
            self.cache[block] = head
        return head
