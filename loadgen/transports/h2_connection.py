"""One HTTP/2 connection as an asyncio Protocol: the state machine that multiplexes gRPC calls.

A call is an HTTP/2 stream with a fresh id (odd, increasing): its HEADERS and DATA frames go out
together, and the frame parser resolves the stream's future when the trailers arrive (a stream's
``sink`` also gets each DATA payload as it arrives: ``--streaming`` times each message). A connection
respects the server's ``SETTINGS_MAX_CONCURRENT_STREAMS``. The client advertises large flow-control
windows and returns credit in batches once half a window is used; requests larger than the peer's
window or frame size are split and paced by its WINDOW_UPDATEs. A GOAWAY fails the streams the
server will not process and retires the connection: the slot's next send opens a new one (so does
running out of stream ids).

Facts from RFC 9113: SETTINGS_INITIAL_WINDOW_SIZE does not change the connection window, only
WINDOW_UPDATE on stream 0 does (§6.9.2); a header block split over HEADERS + CONTINUATION frames
must not be interleaved with other frames (§6.10).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import cast

import grpc
import hpack

from loadgen.transports.h2_frames import (
    ACK,
    CANCEL,
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    DEFAULT_WINDOW,
    END_HEADERS,
    END_STREAM,
    FLOW_CONTROL_ERROR,
    FRAME_HEADER,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    MAX_FRAME_SIZE,
    MAX_STREAM_ID,
    MAX_WINDOW,
    MIN_FRAME_SIZE,
    PADDED,
    PING,
    PREFACE,
    PRIORITY_FLAG,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    SETTINGS_ENABLE_PUSH,
    SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    SETTINGS_MAX_FRAME_SIZE,
    STREAM_MASK,
    U32,
    WINDOW_UPDATE,
    ConnectionError_,
    PreparedCall,
    frame,
    goaway,
    h2_error_name,
    settings_frame,
    unpadded,
    window_update,
)
from loadgen.transports.h2_headers import RESET_CODES, HeaderDecoder, interpret, status_reason
from loadgen.transports.reasons import connection_lost, connection_reason

RECEIVE_FRAME_SIZE = 2**20
"""What we let the server send in one frame: fewer, larger DATA frames to parse."""


class _Stream:
    __slots__ = ("body", "future", "http_status", "opened_at", "received", "send_window", "sid", "sink")

    def __init__(
        self, sid: int, future: asyncio.Future[str | None], send_window: int, opened_at: float
    ) -> None:
        self.sid = sid
        self.future = future
        self.send_window = send_window
        self.opened_at = opened_at  # loop time: the transport's watchdog fails it past the deadline
        self.received = 0
        self.http_status = 200
        self.body: list[bytes] | None = None
        self.sink: Callable[[bytes], None] | None = None  # --streaming: each DATA payload, on arrival


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
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        self.usable = True
        settings = [
            (SETTINGS_ENABLE_PUSH, 0),
            (SETTINGS_INITIAL_WINDOW_SIZE, self.window),
            (SETTINGS_MAX_FRAME_SIZE, RECEIVE_FRAME_SIZE),
        ]
        hello = PREFACE + settings_frame(settings)
        if self.window > DEFAULT_WINDOW:  # SETTINGS do not widen the connection window (RFC 9113 §6.9.2)
            hello += window_update(0, self.window - DEFAULT_WINDOW)
        self.transport.write(hello)

    def data_received(self, data: bytes) -> None:
        if self._partial:
            self._partial += data
            if len(self._partial) < self._need:
                return
            data, self._partial = bytes(self._partial), bytearray()
        try:
            pos = self._frames(data)
        except ConnectionError_ as exc:
            self.abort(exc.code, f"PROTOCOL: HTTP/2 protocol error from {self.peer}: {exc}")
            return
        except hpack.HPACKError as exc:
            self.abort(COMPRESSION_ERROR, f"PROTOCOL: bad HPACK block from {self.peer}: {exc}")
            return
        except ValueError as exc:  # a status that is not a number
            self.abort(PROTOCOL_ERROR, f"PROTOCOL: bad response header from {self.peer}: {exc}")
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
        reason = self.closed_reason or connection_lost(self.peer, exc)
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
        unpack = FRAME_HEADER.unpack_from
        while end - pos >= 9:
            hi, lo, ftype, flags, sid = unpack(data, pos)
            start = pos + 9
            stop = start + (hi << 16 | lo)
            if stop > end:
                break
            pos = stop
            sid &= STREAM_MASK
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
        if stream.sink is not None:  # a stream's messages (never kept as a body too)
            stream.sink(unpadded(data[start:stop]) if flags & PADDED else data[start:stop])
        elif stream.body is not None:
            stream.body.append(unpadded(data[start:stop]) if flags & PADDED else data[start:stop])
        if flags & END_STREAM:
            self._finish(stream, status_reason(grpc.StatusCode.INTERNAL, "response ended without trailers"))

    def _on_headers(self, sid: int, flags: int, block: bytes) -> None:
        if flags & PADDED:
            block = unpadded(block)
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
        increment = U32.unpack(payload)[0] & STREAM_MASK
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
                if value == 0:  # it takes no stream: retired, as by GOAWAY (a call would wait forever)
                    self.usable = False
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
        code = U32.unpack(payload)[0]
        status = RESET_CODES.get(code, grpc.StatusCode.INTERNAL)
        self._finish(stream, status_reason(status, f"stream reset by the server ({h2_error_name(code)})"))

    def _on_goaway(self, payload: bytes) -> None:
        if len(payload) < 8:
            raise ConnectionError_(FRAME_SIZE_ERROR, "GOAWAY too short")
        last, code = struct.unpack_from(">LL", payload)
        last &= STREAM_MASK
        debug = " ".join(payload[8:].decode("utf-8", "replace").split())  # a reason is one line
        said = f"{h2_error_name(code)}{': ' + debug if debug else ''}"
        reason = connection_reason(f"server sent GOAWAY ({said})")
        self.closed_reason = reason
        self.usable = False
        for stream in [s for sid, s in self.streams.items() if sid > last]:
            self._finish(stream, reason)  # never processed: the slot retries on a new connection
        if not self.streams:
            self.close()
        self._wake()

    # -- outgoing ------------------------------------------------------------------------------------
    def _write(self, data: bytes, at_once: bool = False) -> None:
        """Writes of one loop iteration go out as one send; alone in flight or ``at_once``, at once
        (saves a loop turn), after what the turn wrote before (frames keep their order)."""
        if (at_once or len(self.streams) <= 1 and not self._flush_scheduled) and self.transport is not None:
            if self._out:
                data, self._out = b"".join(self._out) + data, []
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

    def start(self, call: PreparedCall, *, at_once: bool = False) -> _Stream | None:
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
        self._write(call.frames(stream.sid), at_once)
        return stream

    async def call(
        self, call: PreparedCall, *, keep_body: bool = False, sink: Callable[[bytes], None] | None = None
    ) -> tuple[str | None, bytes]:
        """One call through any limit (stream count, windows, frame size); returns the reason and,
        with ``keep_body``, the response's DATA (gRPC length-prefixed messages)."""
        while len(self.streams) >= self.max_streams:
            if not self.usable:
                return self.closed_reason or connection_reason(f"connection to {self.peer} closed"), b""
            await self._wait()
        if not self.usable:
            return self.closed_reason or connection_reason(f"connection to {self.peer} closed"), b""
        stream = self._open_stream()
        stream.sink = sink
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
            self._write(frame(RST_STREAM, 0, stream.sid, U32.pack(CANCEL)))
            if not self.usable and not self.streams:
                self.close()

    def abort(self, code: int, reason: str) -> None:
        """A connection error: tell the server, fail every stream with ``reason`` and close."""
        self.closed_reason = reason
        self.close(code, reason)

    def close(self, code: int = 0, reason: str = "") -> None:
        """Say GOAWAY (after what is still to write) and close."""
        self.usable = False
        if self.transport is not None and not self.transport.is_closing():
            self._flush_scheduled = False
            self._write(goaway(0, code, reason.encode()[:200]), at_once=True)
            self.transport.close()
