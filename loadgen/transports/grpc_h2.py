"""gRPC without the gRPC library: the transport over a minimal HTTP/2 client (:mod:`.h2_connection`).

A unary gRPC call is an HTTP/2 stream: one HEADERS frame (HPACK), one DATA frame holding a 5-byte
length prefix and the protobuf message, and back response headers, DATA and trailers carrying
``grpc-status``. This transport builds the HEADERS block and the DATA payload once per request
(:class:`~loadgen.transports.h2_frames.PreparedCall`); a send writes the two frames with a fresh
stream id and awaits the call's result.

One connection (prior-knowledge h2c, or TLS with ALPN ``h2`` when ``ssl`` is given) carries up to
``slots_per_connection`` in-flight slots; one that is lost or retired (GOAWAY, stream ids used up)
is replaced on its slots' next send.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from ssl import SSLContext
from typing import Any

import grpc

from loadgen.config import REQUEST_TIMEOUT_S
from loadgen.transports.addresses import GRPC_PORTS, split_host_port
from loadgen.transports.base import (
    Arrivals,
    CapturedArrivals,
    CaptureSender,
    InferRequestSpec,
    OutputTensor,
    Sender,
    SequenceRequests,
    Starter,
    StreamSender,
    TaggedRequests,
    Watchdog,
)
from loadgen.transports.grpc_codec import (
    SLOTS_PER_CHANNEL,
    MessageSequence,
    TaggedMessage,
    build_request,
    channel_index,
    read_outputs,
    read_stream_response,
    stream_outputs,
)
from loadgen.transports.h2_connection import H2Connection
from loadgen.transports.h2_frames import MAX_WINDOW, PreparedCall
from loadgen.transports.h2_headers import encode_headers, status_reason
from loadgen.transports.reasons import cannot_connect, connection_reason

PATH = "/inference.GRPCInferenceService/ModelInfer"
STREAM_PATH = "/inference.GRPCInferenceService/ModelStreamInfer"


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
            return cannot_connect(peer, exc)
        finally:
            self._connecting = None
        if owner.ssl is not None:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
                transport.close()
                return connection_reason(f"{peer} did not agree to HTTP/2 (ALPN h2) over TLS")
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


class _StreamReader:
    """One slot's stream messages: splits DATA into gRPC messages (5-byte prefix), time-stamps each
    with outputs into ``arrivals`` and resolves the call at the final one (or at an error)."""

    __slots__ = ("arrivals", "buffer", "future", "reason", "stream", "token_output")

    def __init__(self, token_output: str = "") -> None:
        self.token_output = token_output
        self.arrivals = Arrivals()
        self.buffer = bytearray()
        self.future: asyncio.Future[str | None] | None = None
        self.reason: str | None = None
        self.stream: Any = None
        """The HTTP/2 stream being read: each message restarts its ``--request-timeout`` clock, so
        the timeout bounds a stream's silence, not its length (as over HTTP)."""

    def feed(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        if self.stream is not None:
            self.stream.opened_at = asyncio.get_running_loop().time()
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 5:
            end = 5 + int.from_bytes(buffer[1:5], "big")
            if len(buffer) < end:
                return
            message = bytes(buffer[5:end])
            reason, tokens, final = read_stream_response(message, self.token_output)
            del buffer[:end]
            if tokens >= 0:  # a response with outputs
                self.arrivals.append(now)
                self.arrivals.tokens += tokens
                if isinstance(self.arrivals, CapturedArrivals):  # --validate
                    self.arrivals.responses.append(stream_outputs(message))
            if reason is not None or final:
                self.reason = reason
                if self.future is not None and not self.future.done():
                    self.future.set_result(reason)
                buffer.clear()  # nothing of this request follows its final message
                return


class GrpcH2Transport:
    """gRPC inference calls over a minimal HTTP/2 client; see the module docstring."""

    name = "grpc"

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        slots_per_connection: int = SLOTS_PER_CHANNEL,
        max_connections: int | None = None,
        ssl: SSLContext | None = None,
        window: int = MAX_WINDOW,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        streaming: bool = False,
        token_output: str = "",
    ) -> None:
        self.url = url
        self.streaming = streaming
        self.token_output = token_output
        self.host, self.port = split_host_port(url, GRPC_PORTS)
        self.metadata = [(k.lower(), v) for k, v in (headers or {}).items()]
        self.slots_per_connection = slots_per_connection
        self.max_connections = max_connections
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
        """The call's frames, built once; a stream's request is a ModelStreamInfer call of its own
        (one HTTP/2 stream per request, ended by the client: Triton then ends it after the final
        response), asking for the empty final response."""
        scheme = "https" if self.ssl is not None else "http"
        path = STREAM_PATH if self.streaming else PATH
        block = encode_headers(request_headers(self.authority, self.metadata, scheme=scheme, path=path))
        return PreparedCall(block, build_request(request, stream=self.streaming))

    def prepare_sequence(self, request: InferRequestSpec) -> SequenceRequests:
        """A sequence model's call: the HEADERS block and message built once; a send's DATA frame
        carries the message with its id and flags appended."""
        scheme = "https" if self.ssl is not None else "http"
        block = encode_headers(request_headers(self.authority, self.metadata, scheme=scheme))
        return _CallSequence(block, MessageSequence(build_request(request)))

    def prepare_tagged(self, request: InferRequestSpec) -> TaggedRequests:
        """As :meth:`prepare`; a send's DATA frame carries the message with its id appended."""
        call = self.prepare(request)
        return _CallTagged(call.block, TaggedMessage(build_request(request, stream=self.streaming)))

    def channel(self, slot: int) -> _Channel:
        index = channel_index(slot, self.slots_per_connection, self.max_connections)
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

    def starter(self, slot: int) -> Starter:
        """Writes a call at once on the slot's open connection (without waiting for the loop
        turn's other writes: the open loop stamps its send here); None before it is open or past a
        limit, where the :meth:`sender` takes it."""
        self._watchdog.start()
        channel = self.channel(slot)

        def start(call: PreparedCall) -> asyncio.Future[str | None] | None:
            connection = channel.connection
            if connection is None or not connection.usable:
                return None
            stream = connection.start(call, at_once=True)
            return None if stream is None else stream.future

        return start

    def stream_sender(self, slot: int) -> StreamSender:
        """``--streaming``: each response message is timed as its DATA arrives and the request
        ends at its final message (the trailers follow on their own, a fraction of a ms later)."""
        self._watchdog.start()
        channel = self.channel(slot)
        reader = _StreamReader(self.token_output)

        async def send(call: PreparedCall, arrivals: Arrivals) -> str | None:
            connection = channel.connection
            if connection is None or not connection.usable:
                opened = await channel.connect()
                if isinstance(opened, str):
                    return opened
                connection = opened
            reader.arrivals = arrivals
            reader.buffer.clear()
            stream = connection.start(call)
            if stream is None:  # past a limit: the slow path, which ends at the trailers
                reader.future = None
                reason, _ = await connection.call(call, sink=reader.feed)
                return reader.reason if reader.reason is not None else reason
            reader.future, reader.reason, reader.stream = stream.future, None, stream
            stream.sink = reader.feed
            try:
                return await stream.future
            except asyncio.CancelledError:
                connection.cancel(stream)
                raise
            finally:
                stream.sink = reader.stream = None  # the slot's next request has the reader

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
        async def send(call: PreparedCall) -> tuple[str | None, dict[str, OutputTensor]]:
            reason, body = await self.call(call, slot)
            if reason is not None:
                return reason, {}
            if body[:1] != b"\x00":
                return status_reason(grpc.StatusCode.INTERNAL, "compressed or empty response message"), {}
            return read_outputs(body[5:])

        return send

    def parse_outputs(self, response: dict[str, OutputTensor]) -> dict[str, OutputTensor]:
        """The outputs the capture sender has read already (:func:`read_outputs`)."""
        return response

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


class _CallTagged:
    __slots__ = ("block", "messages")

    def __init__(self, block: bytes, messages: TaggedMessage) -> None:
        self.block, self.messages = block, messages

    def request(self, request_id: bytes) -> PreparedCall:
        return PreparedCall(self.block, self.messages.request(request_id))


class _CallSequence:
    __slots__ = ("block", "messages")

    def __init__(self, block: bytes, messages: MessageSequence) -> None:
        self.block, self.messages = block, messages

    def request(self, sequence_id: int | str, start: bool, end: bool) -> PreparedCall:
        return PreparedCall(self.block, self.messages.request(sequence_id, start, end))
