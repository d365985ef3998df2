"""HTTP/2 header blocks of a gRPC call: HPACK encoding of requests, decoding of responses, and what
a response's ``:status``, ``grpc-status`` or RST_STREAM code means as a gRPC status and error reason.

Responses are not decoded beyond their header blocks: HPACK-decoding every block is what keeps the
dynamic table right, and small caches make the repeated blocks of a busy connection cost a dict
lookup: Triton's fully indexed ones (``88c0bf`` then ``be``), and blocks that insert the same
literals again each time (nginx's ``server`` and ``date``), whose insertions are replayed.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Sequence
from typing import NamedTuple, TypeVar

import grpc
import hpack

from loadgen.transports import reasons

HEADER_CACHE_SIZE = 256
T = TypeVar("T")

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


def _integer_end(block: bytes, i: int, prefix_bits: int) -> tuple[int, int]:
    """An HPACK integer (RFC 7541 §5.1) at ``i``: its value and where it ends."""
    mask = (1 << prefix_bits) - 1
    value = block[i] & mask
    i += 1
    if value < mask:
        return value, i
    shift = 0
    while i < len(block):
        byte = block[i]
        value += (byte & 0x7F) << shift
        shift += 7
        i += 1
        if not byte & 0x80:
            break
    return value, i


def _string_end(block: bytes, i: int) -> int:
    """Where the HPACK string literal (RFC 7541 §5.2) at ``i`` ends."""
    length, i = _integer_end(block, i, 7)
    return i + length


STATIC_TABLE_SIZE = 61
"""Indexes 1..61 name the static table (RFC 7541 Appendix A); above, the dynamic one."""


def field_kinds(block: bytes) -> list[tuple[str, int]] | None:
    """Each field of the HPACK block as (kind, the index it refers to, 0 for a literal name):
    ``indexed`` (§6.1), ``inserted`` (a literal with incremental indexing, §6.2.1), ``literal``
    (without or never indexed, §6.2.2-3), ``resize`` (a table size update, §6.3); None if the
    block does not parse."""
    kinds: list[tuple[str, int]] = []
    i, n = 0, len(block)
    try:
        while i < n:
            byte = block[i]
            if byte & 0x80:
                index, i = _integer_end(block, i, 7)
                kinds.append(("indexed", index))
                continue
            if byte & 0xE0 == 0x20:
                size, i = _integer_end(block, i, 5)
                kinds.append(("resize", size))
                continue
            inserted = byte & 0xC0 == 0x40
            name, i = _integer_end(block, i, 6 if inserted else 4)
            if name == 0:
                i = _string_end(block, i)
            i = _string_end(block, i)
            kinds.append(("inserted" if inserted else "literal", name))
    except IndexError:
        return None
    return kinds if i == n else None


def table_unchanged(block: bytes) -> bool:
    """True if decoding the HPACK block cannot change the dynamic table: every field is indexed
    or a literal without or never indexed (as nginx sends ``etag``), no insertion, no resize."""
    kinds = field_kinds(block)
    return kinds is not None and all(kind in ("indexed", "literal") for kind, _ in kinds)


def static_only(kinds: list[tuple[str, int]] | None) -> bool:
    """The block refers to no dynamic-table entry (and does not resize it): its meaning does not
    depend on the table, whatever earlier blocks put there."""
    return kinds is not None and all(kind != "resize" and index <= STATIC_TABLE_SIZE for kind, index in kinds)


class HeaderDecoder:
    """HPACK decoding of every response block, in order, with two caches.

    A block that leaves the dynamic table as it was (:func:`table_unchanged`, e.g. Triton's fully
    indexed blocks) keeps its meaning until a block that may change the table is decoded; then
    that cache is cleared. A block that refers to no dynamic entry (:func:`static_only`, e.g.
    nginx's, which inserts ``server`` and ``date`` again each time) means the same whatever the
    table holds: a repeat is answered from the cache and only its insertions are replayed into the
    table (no Huffman decoding), so later blocks that refer to them decode right. A full cache
    starts again (a server's ``date`` header makes a new block every second).
    """

    def __init__(self) -> None:
        self.decoder = hpack.Decoder()
        self.cache: dict[bytes, Head] = {}
        self.static: dict[bytes, tuple[Head, tuple[tuple[bytes, bytes], ...]]] = {}

    def decode(self, block: bytes) -> Head:
        head = self.cache.get(block)
        if head is not None:
            return head
        known = self.static.get(block)
        if known is not None:
            head, inserts = known
            for name, value in inserts:
                self.decoder.header_table.add(name, value)
            if inserts:
                self.cache.clear()
            return head
        fields = self.decoder.decode(block, raw=True)
        head = interpret(fields)
        kinds = field_kinds(block)
        if kinds is not None and all(kind in ("indexed", "literal") for kind, _ in kinds):
            _remember(self.cache, block, head)
        else:
            self.cache.clear()
        if kinds is not None and static_only(kinds):
            inserts = tuple(
                (bytes(f[0]), bytes(f[1]))
                for f, (kind, _) in zip(fields, kinds, strict=True)
                if kind == "inserted"
            )
            _remember(self.static, block, (head, inserts))
        return head


def _remember(cache: dict[bytes, T], block: bytes, value: T) -> None:
    if len(cache) >= HEADER_CACHE_SIZE:
        cache.clear()
    cache[block] = value
