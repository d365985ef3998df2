"""gRPC without the gRPC library: a minimal HTTP/2 client as an asyncio Protocol.

A unary gRPC call is an HTTP/2 stream: one HEADERS frame (HPACK), one DATA frame
holding a 5-byte length prefix and the protobuf message, and back response
headers, DATA and trailers carrying ``grpc-status``. This transport builds the
HEADERS block and the DATA payload once per request (:class:`PreparedCall`); a
send writes the two frames with a fresh stream id (odd, increasing) and awaits a
future that the frame parser resolves when the trailers arrive. Responses are not
decoded beyond their header blocks: HPACK-decoding every block is what keeps the
dynamic table right, and a small cache makes the repeated, fully indexed blocks of
a busy connection (``88c0bf`` then ``be``) cost one dict lookup.

One connection (prior-knowledge h2c, or TLS with ALPN ``h2`` when ``ssl`` is given)
carries up to ``slots_per_connection`` in-flight slots and respects the server's
``SETTINGS_MAX_CONCURRENT_STREAMS``. The client advertises large flow-control
windows and returns credit in batches once half a window is used; requests larger
than the peer's window or frame size are split and paced by its WINDOW_UPDATEs.
A GOAWAY fails the streams the server will not process and retires the
connection: the slot's next send opens a new one (so does running out of stream
ids).

Facts from RFC 9113: frame header = 24-bit length, 8-bit type, 8-bit flags, 1
reserved bit + 31-bit stream id (§4.1); SETTINGS_INITIAL_WINDOW_SIZE does not
change the connection window, only WINDOW_UPDATE on stream 0 does (§6.9.2);
windows above 2^31-1 are a FLOW_CONTROL_ERROR (§6.5.2); frame sizes are
2^14..2^24-1 (§6.5.2); a header block split over HEADERS + CONTINUATION frames
must not be interleaved with other frames (§6.10).
"""

from __future__ import annotations

import asyncio
import struct
import urllib.parse
from collections.abc import Iterable, Sequence
from ssl import SSLContext
from typing import NamedTuple

import grpc
import hpack

from loadgen.config import REQUEST_TIMEOUT_S
from loadgen.transports.base import (
    CaptureSender,
    InferRequestSpec,
    OutputTensor,
    Sender,
    Watchdog,
)
from loadgen.transports.grpc import SLOTS_PER_CHANNEL, build_request, error_reason, parse_response

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PATH = "/inference.GRPCInferenceService/ModelInfer"
DEFAULT_PORT = 8001

# frame types (RFC 9113 §6)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    range(10)
)
# flags
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
# settings identifiers (RFC 9113 §6.5.2)
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
# error codes (RFC 9113 §7)
H2_ERRORS = (
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "INTERNAL_ERROR",
    "FLOW_CONTROL_ERROR",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "FRAME_SIZE_ERROR",
    "REFUSED_STREAM",
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY",
    "HTTP_1_1_REQUIRED",
)
PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, CANCEL, COMPRESSION_ERROR = 0x1, 0x3, 0x6, 0x8, 0x9

MAX_WINDOW = 2**31 - 1
MAX_STREAM_ID = 2**31 - 1
DEFAULT_WINDOW = 65_535
MIN_FRAME_SIZE = 2**14
MAX_FRAME_SIZE = 2**24 - 1
RECEIVE_FRAME_SIZE = 2**20
"""What we let the server send in one frame: fewer, larger DATA frames to parse."""
HEADER_CACHE_SIZE = 256

_FRAME_HEADER = struct.Struct(">BHBBL")  # length (high byte, low 16 bits), type, flags, stream id
_U32 = struct.Struct(">L")
_STREAM_MASK = 0x7FFFFFFF
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}
# gRPC's mapping of RST_STREAM codes and of HTTP statuses without grpc-status (doc/PROTOCOL-HTTP2.md)
_RESET_CODES = {7: grpc.StatusCode.UNAVAILABLE, 8: grpc.StatusCode.CANCELLED}
_RESET_CODES |= {11: grpc.StatusCode.RESOURCE_EXHAUSTED, 12: grpc.StatusCode.PERMISSION_DENIED}
_HTTP_CODES = {400: grpc.StatusCode.INTERNAL, 401: grpc.StatusCode.UNAUTHENTICATED}
_HTTP_CODES |= {403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.UNIMPLEMENTED}
_HTTP_CODES |= {code: grpc.StatusCode.UNAVAILABLE for code in (429, 502, 503, 504)}


# -- frames ------------------------------------------------------------------------------------------


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame: the 9-byte header and the payload."""
    n = len(payload)
    return _FRAME_HEADER.pack(n >> 16, n & 0xFFFF, ftype, flags, stream_id) + payload


def settings_frame(settings: Sequence[tuple[int, int]]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HL", key, value) for key, value in settings))


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(increment))


def goaway(last_stream_id: int, error_code: int, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, struct.pack(">LL", last_stream_id, error_code) + debug)


def h2_error_name(code: int) -> str:
    return H2_ERRORS[code] if 0 <= code < len(H2_ERRORS) else f"0x{code:x}"


def split_host_port(url: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url if "//" in url else f"//{url}")
    if parts.scheme not in ("", "http", "https", "grpc", "grpcs"):
        raise ValueError(f"unsupported URL scheme in {url!r}: use host:port")
    return parts.hostname or "localhost", parts.port or default_port


def encode_headers(headers: Sequence[tuple[str, str]]) -> bytes:
    """HPACK without touching the dynamic table: static-table indices where they match exactly,
    literals never indexed otherwise, so the block can be sent any number of times unchanged."""
    return hpack.Encoder().encode([hpack.NeverIndexedHeaderTuple(name, value) for name, value in headers])


def request_headers(
    authority: str, metadata: Sequence[tuple[str, str]] = (), *, scheme: str = "http", path: str = PATH
) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", scheme),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        *metadata,
    ]


class PreparedCall:
    """One request, built once: the HPACK block and the DATA payload (gRPC length prefix + message).

    A send only fills in the stream id of the two frame headers.
    """

    __slots__ = ("block", "data_prefix", "headers_prefix", "payload", "size")

    def __init__(self, block: bytes, message: bytes) -> None:
        self.block = block
        self.payload = b"\x00" + _U32.pack(len(message)) + message  # not compressed
        self.size = len(self.payload)
        self.data_prefix = frame(DATA, END_STREAM, 0, self.payload)[:5]
        # a block over the smallest frame size any peer accepts goes out with CONTINUATION frames
        self.headers_prefix = (
            frame(HEADERS, END_HEADERS, 0, block)[:5] if len(block) <= MIN_FRAME_SIZE else b""
        )

    def frames(self, stream_id: int) -> bytes:
        """Both frames of the fast path (fits the peer's frame size and windows)."""
        sid = _U32.pack(stream_id)
        return b"".join((self.headers_prefix, sid, self.block, self.data_prefix, sid, self.payload))

    def header_frames(self, stream_id: int, max_frame: int) -> bytes:
        block = self.block
        if len(block) <= max_frame:
            return frame(HEADERS, END_HEADERS, stream_id, block)
        chunks = [block[i : i + max_frame] for i in range(0, len(block), max_frame)]
        out = [frame(HEADERS, 0, stream_id, chunks[0])]
        out += [frame(CONTINUATION, 0, stream_id, c) for c in chunks[1:-1]]
        out.append(frame(CONTINUATION, END_HEADERS, stream_id, chunks[-1]))
        return b"".join(out)


# -- response header blocks --------------------------------------------------------------------------


class Head(NamedTuple):
    """What a response header block means to a call."""

    http_status: int  # 0: no :status in the block (trailers)
    grpc_status: int  # -1: no grpc-status in the block
    reason: str | None  # the error reason if the call ends with this block


def status_reason(code: grpc.StatusCode, details: str) -> str:
    """The reason string loadgen's grpc.aio transport gives for the same status."""
    return error_reason(grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details))


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


# -- one HTTP/2 connection ---------------------------------------------------------------------------


class ConnectionError_(Exception):
    """A connection error found while parsing (RFC 9113 §5.4.1): code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Stream:
    __slots__ = ("body", "future", "http_status", "opened_at", "received", "send_window", "sid")

    def __init__(
        self, sid: int, future: asyncio.Future[str | None], send_window: int, opened_at: float
    ) -> None:
        self.sid = sid
        self.future = future
        self.send_window = send_window
        self.opened_at = opened_at
        """Loop time the call started: the transport's watchdog fails it past the deadline."""
        self.received = 0
        self.http_status = 200
        self.body: list[bytes] | None = None


class H2Connection(asyncio.Protocol):
    """One HTTP/2 connection multiplexing gRPC calls; see the module docstring."""

    def __init__(self, peer: str, *, window: int = MAX_WINDOW, first_stream_id: int = 1) -> None:
        if not DEFAULT_WINDOW <= window <= MAX_WINDOW:
            raise ValueError(f"window must be within {DEFAULT_WINDOW}..{MAX_WINDOW}")
        self.peer = peer
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.usable = False  # takes new streams
        self.streams: dict[int, _Stream] = {}
        self.next_id = first_stream_id
        # what we may send: the peer's settings and windows
        self.send_window = DEFAULT_WINDOW
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_max_frame = MIN_FRAME_SIZE
        self.max_streams = MAX_STREAM_ID
        self.fast_limit = min(self.peer_initial_window, self.peer_max_frame)
        # what the peer may send us
        self.window = window
        self.unacked = 0
        self.decoder = HeaderDecoder()
        self.closed_reason: str | None = None
        self.lost: asyncio.Future[None] = self.loop.create_future()  # done at connection_lost
        self._partial = bytearray()
        self._need = 0
        self._continuation: tuple[int, int, list[bytes]] | None = None
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._waiters: list[asyncio.Future[None]] = []  # for stream capacity or send window

    # -- asyncio.Protocol ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.usable = True
        settings = [
            (SETTINGS_ENABLE_PUSH, 0),
            (SETTINGS_INITIAL_WINDOW_SIZE, self.window),
            (SETTINGS_MAX_FRAME_SIZE, RECEIVE_FRAME_SIZE),
        ]
        hello = PREFACE + settings_frame(settings)
        if self.window > DEFAULT_WINDOW:  # SETTINGS do not widen the connection window (RFC 9113 §6.9.2)
            hello += window_update(0, self.window - DEFAULT_WINDOW)
        transport.write(hello)

    def data_received(self, data: bytes) -> None:
        if self._partial:
            self._partial += data
            if len(self._partial) < self._need:
                return
            data, self._partial = bytes(self._partial), bytearray()
        try:
            pos = self._frames(data)
        except ConnectionError_ as exc:
            self.abort(exc.code, f"INTERNAL: HTTP/2 protocol error from {self.peer}: {exc}")
            return
        except hpack.HPACKError as exc:
            self.abort(COMPRESSION_ERROR, f"INTERNAL: bad HPACK block from {self.peer}: {exc}")
            return
        except ValueError as exc:  # a status that is not a number
            self.abort(PROTOCOL_ERROR, f"INTERNAL: bad response header from {self.peer}: {exc}")
            return
        if pos < len(data):
            self._partial = bytearray(data[pos:])
            if len(self._partial) >= 9:
                hi, lo = self._partial[0], int.from_bytes(self._partial[1:3], "big")
                self._need = 9 + (hi << 16 | lo)
            else:
                self._need = 9

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.usable = False
        reason = self.closed_reason or f"UNAVAILABLE: connection to {self.peer} lost" + (
            f": {exc}" if exc else ""
        )
        self.closed_reason = reason
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            if not stream.future.done():
                stream.future.set_result(reason)
        self._wake()
        if not self.lost.done():
            self.lost.set_result(None)

    # -- incoming frames -----------------------------------------------------------------------------
    def _frames(self, data: bytes) -> int:
        """Handle every whole frame in ``data``; returns where the unparsed rest starts."""
        pos, end = 0, len(data)
        unpack = _FRAME_HEADER.unpack_from
        while end - pos >= 9:
            hi, lo, ftype, flags, sid = unpack(data, pos)
            start = pos + 9
            stop = start + (hi << 16 | lo)
            if stop > end:
                break
            pos = stop
            sid &= _STREAM_MASK
            if self._continuation is not None and ftype != CONTINUATION:
                raise ConnectionError_(PROTOCOL_ERROR, "header block interrupted by another frame")
            if ftype == DATA:
                self._on_data(sid, flags, data, start, stop)
            elif ftype == HEADERS:
                self._on_headers(sid, flags, data[start:stop])
            elif ftype == WINDOW_UPDATE:
                self._on_window_update(sid, data[start:stop])
            elif ftype == CONTINUATION:
                self._on_continuation(sid, flags, data[start:stop])
            elif ftype == SETTINGS:
                if not flags & ACK:
                    self._on_settings(data[start:stop])
            elif ftype == PING:
                if not flags & ACK:
                    self._write(frame(PING, ACK, 0, data[start:stop]))
            elif ftype == RST_STREAM:
                self._on_reset(sid, data[start:stop])
            elif ftype == GOAWAY:
                self._on_goaway(data[start:stop])
            elif ftype == PUSH_PROMISE:
                raise ConnectionError_(PROTOCOL_ERROR, "PUSH_PROMISE although push is disabled")
            # PRIORITY and unknown frame types are ignored (RFC 9113 §4.1, §5.5)
        return pos

    def _on_data(self, sid: int, flags: int, data: bytes, start: int, stop: int) -> None:
        length = stop - start
        self.unacked += length
        if self.unacked >= self.window >> 1:
            self._write(window_update(0, self.unacked))
            self.unacked = 0
        stream = self.streams.get(sid)
        if stream is None:
            return
        stream.received += length
        if stream.received >= self.window >> 1 and not flags & END_STREAM:
            self._write(window_update(sid, stream.received))
            stream.received = 0
        if stream.body is not None:
            if flags & PADDED:
                start, stop = start + 1, stop - data[start]
            stream.body.append(data[start:stop])
        if flags & END_STREAM:
            self._finish(stream, status_reason(grpc.StatusCode.INTERNAL, "response ended without trailers"))

    def _on_headers(self, sid: int, flags: int, block: bytes) -> None:
        if flags & PADDED:
            block = block[1 : len(block) - block[0]]
        if flags & PRIORITY_FLAG:
            block = block[5:]
        if not flags & END_HEADERS:
            self._continuation = (sid, flags, [block])
            return
        self._on_header_block(sid, flags, block)

    def _on_continuation(self, sid: int, flags: int, fragment: bytes) -> None:
        if self._continuation is None or self._continuation[0] != sid:
            raise ConnectionError_(PROTOCOL_ERROR, f"unexpected CONTINUATION on stream {sid}")
        self._continuation[2].append(fragment)
        if flags & END_HEADERS:
            _, first_flags, fragments = self._continuation
            self._continuation = None
            self._on_header_block(sid, first_flags, b"".join(fragments))

    def _on_header_block(self, sid: int, flags: int, block: bytes) -> None:
        head = self.decoder.decode(block)  # always: the dynamic table must see every block
        stream = self.streams.get(sid)
        if stream is None:
            return
        if flags & END_STREAM:
            reason = head.reason
            if head.http_status == 0 and head.grpc_status < 0 and stream.http_status != 200:
                reason = interpret([(b":status", str(stream.http_status).encode())]).reason
            self._finish(stream, reason)
        elif head.http_status not in (0, 200):
            stream.http_status = head.http_status

    def _on_window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionError_(FRAME_SIZE_ERROR, "WINDOW_UPDATE of the wrong size")
        increment = _U32.unpack(payload)[0] & _STREAM_MASK
        if sid == 0:
            self.send_window += increment
            if self.send_window > MAX_WINDOW:
                raise ConnectionError_(FLOW_CONTROL_ERROR, "connection window over 2^31-1")
        else:
            stream = self.streams.get(sid)
            if stream is None:
                return
            stream.send_window += increment
        if self._waiters:
            self._wake()

    def _on_settings(self, payload: bytes) -> None:
        if len(payload) % 6:
            raise ConnectionError_(FRAME_SIZE_ERROR, "SETTINGS of the wrong size")
        for key, value in struct.iter_unpack(">HL", payload):
            if key == SETTINGS_MAX_CONCURRENT_STREAMS:
                self.max_streams = value
            elif key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ConnectionError_(FLOW_CONTROL_ERROR, "initial window over 2^31-1")
                delta, self.peer_initial_window = value - self.peer_initial_window, value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == SETTINGS_MAX_FRAME_SIZE:
                if not MIN_FRAME_SIZE <= value <= MAX_FRAME_SIZE:
                    raise ConnectionError_(PROTOCOL_ERROR, f"bad SETTINGS_MAX_FRAME_SIZE {value}")
                self.peer_max_frame = value
            # HEADER_TABLE_SIZE: our blocks never use the dynamic table; the rest is advisory
        self.fast_limit = min(self.peer_initial_window, self.peer_max_frame)
        self._write(frame(SETTINGS, ACK, 0))
        self._wake()

    def _on_reset(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionError_(FRAME_SIZE_ERROR, "RST_STREAM of the wrong size")
        stream = self.streams.get(sid)
        if stream is None:
            return
        code = _U32.unpack(payload)[0]
        status = _RESET_CODES.get(code, grpc.StatusCode.INTERNAL)
        self._finish(stream, status_reason(status, f"stream reset by the server ({h2_error_name(code)})"))

    def _on_goaway(self, payload: bytes) -> None:
        if len(payload) < 8:
            raise ConnectionError_(FRAME_SIZE_ERROR, "GOAWAY too short")
        last, code = struct.unpack_from(">LL", payload)
        last &= _STREAM_MASK
        debug = payload[8:].decode("utf-8", "replace")
        reason = f"UNAVAILABLE: server sent GOAWAY ({h2_error_name(code)}{': ' + debug if debug else ''})"
        self.closed_reason = reason
        self.usable = False
        for stream in [s for sid, s in self.streams.items() if sid > last]:
            self._finish(stream, reason)  # never processed: the slot retries on a new connection
        if not self.streams:
            self.close()
        self._wake()

    # -- outgoing ------------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        """Writes of one loop iteration go out as one send; alone in flight, at once (saves a loop turn)."""
        if len(self.streams) <= 1 and not self._flush_scheduled and self.transport is not None:
            self.transport.write(data)
            return
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        if out and self.transport is not None:  # empty: close() or abort() took it
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])

    def _finish(self, stream: _Stream, reason: str | None) -> None:
        del self.streams[stream.sid]
        if not stream.future.done():
            stream.future.set_result(reason)
        if self._waiters:
            self._wake()
        if not self.usable and not self.streams:
            self.close()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _open_stream(self) -> _Stream:
        sid = self.next_id
        self.next_id += 2
        if self.next_id > MAX_STREAM_ID:
            self.usable = False  # the last id of this connection: the next send opens a new one
        loop = self.loop
        stream = _Stream(sid, loop.create_future(), self.peer_initial_window, loop.time())
        self.streams[sid] = stream
        return stream

    def start(self, call: PreparedCall) -> _Stream | None:
        """Send ``call`` at once if it fits every limit; None if it has to wait (see :meth:`call`)."""
        size = call.size
        if (
            not self.usable
            or size > self.fast_limit
            or size > self.send_window
            or len(self.streams) >= self.max_streams
            or not call.headers_prefix
        ):
            return None
        stream = self._open_stream()
        self.send_window -= size
        stream.send_window -= size
        self._write(call.frames(stream.sid))
        return stream

    async def call(self, call: PreparedCall, *, keep_body: bool = False) -> tuple[str | None, bytes]:
        """One call through any limit (stream count, windows, frame size); returns the reason and,
        with ``keep_body``, the response's DATA (gRPC length-prefixed messages)."""
        while len(self.streams) >= self.max_streams:
            if not self.usable:
                return self.closed_reason or f"UNAVAILABLE: connection to {self.peer} closed", b""
            await self._wait()
        if not self.usable:
            return self.closed_reason or f"UNAVAILABLE: connection to {self.peer} closed", b""
        stream = self._open_stream()
        if keep_body:
            stream.body = []
        try:
            self._write(call.header_frames(stream.sid, self.peer_max_frame))
            payload, pos = call.payload, 0
            while pos < len(payload) and not stream.future.done():
                allowed = min(self.send_window, stream.send_window, self.peer_max_frame)
                if allowed <= 0:
                    await self._wait()
                    continue
                chunk = payload[pos : pos + allowed]
                pos += len(chunk)
                self.send_window -= len(chunk)
                stream.send_window -= len(chunk)
                self._write(frame(DATA, END_STREAM if pos >= len(payload) else 0, stream.sid, chunk))
            reason = await stream.future
        except asyncio.CancelledError:
            self.cancel(stream)
            raise
        return reason, b"".join(stream.body or ())

    async def _wait(self) -> None:
        waiter: asyncio.Future[None] = self.loop.create_future()
        self._waiters.append(waiter)
        await waiter

    def expire(self, limit: float, reason: str) -> None:
        """Fail (and reset) every call started before the loop time ``limit``."""
        for stream in [s for s in self.streams.values() if s.opened_at < limit]:
            self.cancel(stream)
            if not stream.future.done():
                stream.future.set_result(reason)
        if self._waiters:
            self._wake()

    def cancel(self, stream: _Stream) -> None:
        """The caller gave up on ``stream``: reset it so the server can drop it."""
        if self.streams.pop(stream.sid, None) is not None and self.transport is not None:
            self._write(frame(RST_STREAM, 0, stream.sid, _U32.pack(CANCEL)))
            if not self.usable and not self.streams:
                self.close()

    def abort(self, code: int, reason: str) -> None:
        """A connection error: tell the server, fail every stream with ``reason`` and close."""
        self.closed_reason = reason
        self.usable = False
        if self.transport is not None and not self.transport.is_closing():
            self._flush_scheduled = False
            out, self._out = self._out, []
            self.transport.write(b"".join(out) + goaway(0, code, reason.encode()[:200]))
            self.transport.close()

    def close(self) -> None:
        self.usable = False
        if self.transport is not None and not self.transport.is_closing():
            self._flush_scheduled = False
            out, self._out = self._out, []
            self.transport.write(b"".join(out) + goaway(0, 0))
            self.transport.close()


# -- the transport -----------------------------------------------------------------------------------


class _Channel:
    """One connection at a time for a group of slots; reopened when it is lost or retired."""

    def __init__(self, transport: GrpcH2Transport) -> None:
        self.owner = transport
        self.connection: H2Connection | None = None
        self.opened: list[H2Connection] = []  # not yet lost: retired ones drain in the background
        self._connecting: asyncio.Task[H2Connection | str] | None = None

    async def connect(self) -> H2Connection | str:
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._open())
        return await asyncio.shield(self._connecting)

    async def _open(self) -> H2Connection | str:
        owner = self.owner
        loop = asyncio.get_running_loop()
        peer = f"{owner.host}:{owner.port}"
        try:
            transport, connection = await loop.create_connection(
                lambda: H2Connection(peer, window=owner.window), owner.host, owner.port, ssl=owner.ssl
            )
        except OSError as exc:
            return f"UNAVAILABLE: cannot connect to {peer}: {exc.strerror or exc}"
        finally:
            self._connecting = None
        if owner.ssl is not None:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
                transport.close()
                return f"UNAVAILABLE: {peer} did not agree to HTTP/2 (ALPN h2) over TLS"
        self.connection = connection
        self.opened = [c for c in self.opened if not c.lost.done()] + [connection]
        return connection

    def close(self) -> list[H2Connection]:
        """Close every connection; returns those whose transports have yet to report the loss."""
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        opened, self.opened, self.connection = self.opened, [], None
        for connection in opened:
            connection.close()
        return [c for c in opened if not c.lost.done()]


class GrpcH2Transport:
    """gRPC inference calls over a minimal HTTP/2 client; see the module docstring."""

    name = "grpc"

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        slots_per_connection: int = SLOTS_PER_CHANNEL,
        ssl: SSLContext | None = None,
        window: int = MAX_WINDOW,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.host, self.port = split_host_port(url)
        self.metadata = [(k.lower(), v) for k, v in (headers or {}).items()]
        self.slots_per_connection = slots_per_connection
        self.ssl = ssl
        if ssl is not None:
            ssl.set_alpn_protocols(["h2"])
        self.window = window
        self.authority = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        self._channels: list[_Channel] = []
        self._watchdog = Watchdog(request_timeout_s, self._expire, "grpc-h2-watchdog")

    def _expire(self, limit: float, reason: str) -> None:
        for channel in self._channels:
            for connection in channel.opened:
                connection.expire(limit, reason)

    def prepare(self, request: InferRequestSpec) -> PreparedCall:
        scheme = "https" if self.ssl is not None else "http"
        block = encode_headers(request_headers(self.authority, self.metadata, scheme=scheme))
        return PreparedCall(block, build_request(request))

    def channel(self, slot: int) -> _Channel:
        index = slot // self.slots_per_connection
        while len(self._channels) <= index:
            self._channels.append(_Channel(self))
        return self._channels[index]

    def sender(self, slot: int) -> Sender:
        self._watchdog.start()
        channel = self.channel(slot)

        async def send(call: PreparedCall) -> str | None:
            connection = channel.connection
            if connection is None or not connection.usable:
                opened = await channel.connect()
                if isinstance(opened, str):
                    return opened
                connection = opened
            stream = connection.start(call)
            if stream is None:
                return (await connection.call(call))[0]
            try:
                return await stream.future
            except asyncio.CancelledError:
                connection.cancel(stream)
                raise

        return send

    async def call(self, call: PreparedCall, slot: int = 0) -> tuple[str | None, bytes]:
        """One call that also returns the response's DATA: the gRPC length-prefixed
        ModelInferResponse (5-byte prefix, then the message)."""
        self._watchdog.start()
        channel = self.channel(slot)
        connection = channel.connection
        if connection is None or not connection.usable:
            opened = await channel.connect()
            if isinstance(opened, str):
                return opened, b""
            connection = opened
        return await connection.call(call, keep_body=True)

    def capture_sender(self, slot: int) -> CaptureSender:
        async def send(call: PreparedCall) -> tuple[str | None, bytes]:
            reason, body = await self.call(call, slot)
            if reason is not None:
                return reason, b""
            if body[:1] != b"\x00":
                return status_reason(grpc.StatusCode.INTERNAL, "compressed or empty response message"), b""
            return None, body[5:]

        return send

    def parse_outputs(self, response: bytes) -> dict[str, OutputTensor]:
        return parse_response(response)

    async def close(self, timeout_s: float = 1.0) -> None:
        """Close every connection and wait (``timeout_s`` at most, then abort) until they are
        gone: a TLS connection needs a few turns of the loop to say goodbye."""
        self._watchdog.stop()
        closing = [c for channel in self._channels for c in channel.close()]
        self._channels.clear()
        if closing:
            _, pending = await asyncio.wait([c.lost for c in closing], timeout=timeout_s)
            for connection in closing:
                if connection.lost in pending and connection.transport is not None:
                    connection.transport.abort()
            await asyncio.sleep(0)
