"""The minimal HTTP/2 gRPC client without a server: frames, HPACK blocks, and the connection's
state machine driven by hand-made server frames through an in-memory transport."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Coroutine
from typing import Any

import hpack
import pytest

from loadgen.transports.addresses import GRPC_PORTS, split_host_port
from loadgen.transports.base import InferRequestSpec, InputTensor
from loadgen.transports.grpc_codec import build_request
from loadgen.transports.grpc_h2 import GrpcH2Transport, request_headers
from loadgen.transports.h2_connection import H2Connection
from loadgen.transports.h2_frames import (
    ACK,
    CANCEL,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    MAX_STREAM_ID,
    MIN_FRAME_SIZE,
    PADDED,
    PING,
    PREFACE,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    SETTINGS_ENABLE_PUSH,
    SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    SETTINGS_MAX_FRAME_SIZE,
    WINDOW_UPDATE,
    PreparedCall,
    frame,
    goaway,
    settings_frame,
    window_update,
)
from loadgen.transports.h2_headers import (
    HeaderDecoder,
    encode_headers,
    field_kinds,
    interpret,
    static_only,
    table_unchanged,
)

Frame = tuple[int, int, int, bytes]  # type, flags, stream id, payload
SPEC = InferRequestSpec("identity", (InputTensor("INPUT0", "FP32", (1, 16), bytes(range(64))),))


def parse_frames(data: bytes) -> list[Frame]:
    """Every frame in ``data`` (which must hold whole frames only)."""
    frames, pos = [], 0
    while pos < len(data):
        hi, lo, ftype, flags, sid = struct.unpack_from(">BHBBL", data, pos)
        length = hi << 16 | lo
        frames.append((ftype, flags, sid & 0x7FFFFFFF, data[pos + 9 : pos + 9 + length]))
        pos += 9 + length
    assert pos == len(data), "a partial frame"
    return frames


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


class FakeTransport(asyncio.Transport):
    """Collects what the client writes; closing reports connection_lost like a real transport."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.written = bytearray()
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closing, "write after close"
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def take(self) -> list[Frame]:
        data, self.written = bytes(self.written), bytearray()
        return parse_frames(data.removeprefix(PREFACE))


class Server:
    """The server's side of one connection: HPACK encoder with indexing, as gRPC servers do."""

    def __init__(self, conn: H2Connection) -> None:
        self.conn = conn
        self.encoder = hpack.Encoder()

    def feed(self, *frames: bytes) -> None:
        self.conn.data_received(b"".join(frames))

    def headers(self, sid: int, headers: list[tuple[str, str]], *, end_stream: bool = False) -> bytes:
        flags = END_HEADERS | (END_STREAM if end_stream else 0)
        return frame(HEADERS, flags, sid, self.encoder.encode(headers))

    def response(self, sid: int, message: bytes = b"\x0a\x02ok", status: int = 0, text: str = "") -> bytes:
        head = self.headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
        data = frame(DATA, 0, sid, b"\x00" + len(message).to_bytes(4, "big") + message)
        trailers = [("grpc-status", str(status))] + ([("grpc-message", text)] if text else [])
        return head + data + self.headers(sid, trailers, end_stream=True)


async def connect(**kwargs: Any) -> tuple[H2Connection, FakeTransport, Server]:
    conn = H2Connection("test:1", **kwargs)
    transport = FakeTransport(conn)
    conn.connection_made(transport)
    return conn, transport, Server(conn)


def prepared(metadata: list[tuple[str, str]] | None = None, message: bytes | None = None) -> PreparedCall:
    block = encode_headers(request_headers("example:8001", metadata or []))
    return PreparedCall(block, build_request(SPEC) if message is None else message)


# -- frames and request blocks -----------------------------------------------------------------------


def test_frame_header_layout() -> None:
    data = frame(HEADERS, END_HEADERS | END_STREAM, 2**31 - 1, b"x" * 70000)
    assert data[:3] == (70000).to_bytes(3, "big")
    assert data[3] == 1 and data[4] == 0x5
    assert data[5:9] == b"\x7f\xff\xff\xff"
    assert parse_frames(data) == [(HEADERS, 0x5, 2**31 - 1, b"x" * 70000)]
    assert window_update(3, 1000) == b"\x00\x00\x04\x08\x00\x00\x00\x00\x03\x00\x00\x03\xe8"
    assert parse_frames(settings_frame([(4, 2**31 - 1), (2, 0)])) == [
        (SETTINGS, 0, 0, bytes.fromhex("00047fffffff") + bytes.fromhex("000200000000"))
    ]
    assert parse_frames(goaway(7, 2, b"bye")) == [(GOAWAY, 0, 0, struct.pack(">LL", 7, 2) + b"bye")]


def test_prepared_call_frames_differ_only_in_stream_ids() -> None:
    call = prepared([("authorization", "Bearer x")])
    message = build_request(SPEC)
    first, second = parse_frames(call.frames(1)), parse_frames(call.frames(2**31 - 1))
    assert [(t, f, s) for t, f, s, _ in first] == [
        (HEADERS, END_HEADERS, 1),
        (DATA, END_STREAM, 1),
    ]
    assert [s for _, _, s, _ in second] == [2**31 - 1, 2**31 - 1]
    assert [p for *_, p in first] == [p for *_, p in second]
    assert first[1][3] == b"\x00" + len(message).to_bytes(4, "big") + message
    assert call.size == len(message) + 5
    headers = [(str(n), str(v)) for n, v in hpack.Decoder().decode(first[0][3])]
    assert headers == [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/inference.GRPCInferenceService/ModelInfer"),
        (":authority", "example:8001"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("authorization", "Bearer x"),
    ]


def test_request_block_never_touches_the_dynamic_table() -> None:
    block = prepared([("x-tenant", "a")]).block
    decoder = hpack.Decoder()
    for _ in range(3):  # sent again and again on one connection: the same meaning every time
        assert ("x-tenant", "a") in [(str(n), str(v)) for n, v in decoder.decode(block)]
    assert len(decoder.header_table.dynamic_entries) == 0


def test_large_header_blocks_go_out_with_continuation_frames() -> None:
    call = prepared([("x-big", "v" * 40000)])
    assert call.headers_prefix == b""  # never on the fast path
    frames = parse_frames(call.header_frames(5, MIN_FRAME_SIZE))
    assert [t for t, *_ in frames] == [HEADERS, CONTINUATION, CONTINUATION]
    assert [f for _, f, *_ in frames] == [0, 0, END_HEADERS]
    assert all(s == 5 and len(p) <= MIN_FRAME_SIZE for _, _, s, p in frames)
    assert b"".join(p for *_, p in frames) == call.block


# -- response header blocks --------------------------------------------------------------------------


def test_table_unchanged() -> None:
    assert table_unchanged(bytes.fromhex("88c0bf"))
    assert table_unchanged(b"\xbe")
    assert table_unchanged(b"\xff\x80\x01\x88")  # an index of 7 bits + continuation bytes
    assert not table_unchanged(bytes.fromhex("400b677270632d7374617475730130"))  # literal, indexed
    assert not table_unchanged(b"\x88\x3f\xe1\x1f")  # a table size update
    assert table_unchanged(b"")
    # literals without indexing (0000) and never indexed (0001), as nginx sends date and server
    encoder = hpack.Encoder()
    plain = encoder.encode([(b"date", b"Mon, 07 Dec 2026 12:00:00 GMT")], huffman=True)
    assert plain[0] & 0xC0 == 0x40  # hpack's encoder indexes by default: table changed
    assert not table_unchanged(plain)
    never = encoder.encode([hpack.NeverIndexedHeaderTuple(b"server", b"nginx/1.22.1"), (b":status", b"200")])
    assert never[0] & 0xF0 == 0x10 and table_unchanged(never)
    name_literal = b"\x00\x04date\x03abc"  # a literal name, without indexing
    assert table_unchanged(name_literal) and not table_unchanged(name_literal[:-1])  # cut short


def test_interpret_gives_the_grpc_aio_reasons() -> None:
    assert interpret([(b":status", b"200"), (b"grpc-status", b"0")]).reason is None
    head = interpret([(b"grpc-status", b"3"), (b"grpc-message", b"[request id: 7] bad%20shape%25")])
    assert head.reason == "INVALID_ARGUMENT: bad shape%"
    assert interpret([(b"grpc-status", b"5"), (b"grpc-message", b"x")]).reason == "NOT_FOUND: x"
    assert interpret([(b"grpc-status", b"99")]).reason == "UNKNOWN: "
    unavailable = interpret([(b":status", b"503")]).reason
    assert unavailable == "UNAVAILABLE: HTTP status 503 without grpc-status"
    assert interpret([]).reason == "INTERNAL: response ended without grpc-status"
    long = interpret([(b"grpc-status", b"13"), (b"grpc-message", b"x" * 1000)]).reason
    assert long is not None and len(long) == 300


def test_blocks_that_insert_the_same_literals_again_are_cached_and_keep_the_table_right() -> None:
    """nginx re-sends ``server`` and ``date`` with incremental indexing in every response: the
    block refers to no dynamic entry, so a repeat is answered from the cache and its insertions
    replayed; a later block that refers to them must decode as a plain decoder decodes it."""
    block = hpack.Encoder().encode(
        [(b":status", b"200"), (b"server", b"nginx/1.22.1"), (b"date", b"Mon, 07 Dec 2026 12:00:00 GMT")]
    )
    kinds = field_kinds(block)
    assert kinds is not None and [k for k, _ in kinds] == ["indexed", "inserted", "inserted"]
    assert static_only(kinds) and not table_unchanged(block)
    trailers = bytes.fromhex("00889acac8b21234da8f0130")  # grpc-status: 0, literal without indexing
    ours, reference = HeaderDecoder(), hpack.Decoder()
    for _ in range(3):
        for b in (block, trailers):
            assert ours.decode(b) == interpret(reference.decode(b, raw=True))
    assert block in ours.static and trailers in ours.static  # both mean the same whatever the table
    assert list(ours.decoder.header_table.dynamic_entries) == list(reference.header_table.dynamic_entries)
    refers = b"\x88\xbe"  # :status 200, then the newest dynamic entry (62: date)
    assert not static_only(field_kinds(refers))
    assert ours.decode(refers) == interpret(reference.decode(refers, raw=True))
    assert [bytes(v) for _, v in reference.decode(refers, raw=True)][1].startswith(b"Mon")


def test_header_cache_follows_the_dynamic_table() -> None:
    server, client = hpack.Encoder(), HeaderDecoder()
    first = server.encode([("grpc-status", "0")])  # literal with incremental indexing
    assert client.decode(first).grpc_status == 0 and not client.cache
    again = server.encode([("grpc-status", "0")])  # now only an index into the dynamic table
    assert table_unchanged(again)
    assert client.decode(again).reason is None and again in client.cache
    assert client.decode(again) is client.cache[again]  # the cached meaning
    # a block that adds an entry shifts the dynamic indices: the same bytes mean something else now
    changed = server.encode([("grpc-status", "3"), ("grpc-message", "no")])
    assert client.decode(changed).reason == "INVALID_ARGUMENT: no" and not client.cache
    same_bytes = server.encode([("grpc-status", "3"), ("grpc-message", "no")])
    assert same_bytes != again and table_unchanged(same_bytes)
    assert client.decode(same_bytes).grpc_status == 3
    assert client.decode(again).grpc_status == -1  # index 62 is grpc-message now, not grpc-status 0


# -- the connection ----------------------------------------------------------------------------------


def test_connection_preface_settings_and_window() -> None:
    async def test() -> None:
        conn, transport, _ = await connect(window=2**20)
        data = bytes(transport.written)
        assert data.startswith(PREFACE)
        frames = parse_frames(data[len(PREFACE) :])
        (settings_type, _, _, payload), (update_type, _, sid, increment) = frames
        assert settings_type == SETTINGS
        settings = dict(struct.iter_unpack(">HL", payload))
        assert settings[SETTINGS_ENABLE_PUSH] == 0 and settings[SETTINGS_INITIAL_WINDOW_SIZE] == 2**20
        assert (update_type, sid, int.from_bytes(increment, "big")) == (WINDOW_UPDATE, 0, 2**20 - 65535)
        assert conn.usable

    run(test)


def test_settings_are_acked_and_applied_and_pings_answered() -> None:
    async def test() -> None:
        conn, transport, server = await connect()
        transport.take()
        server.feed(
            settings_frame([(SETTINGS_MAX_CONCURRENT_STREAMS, 7), (SETTINGS_MAX_FRAME_SIZE, 2**20)]),
            frame(PING, 0, 0, b"12345678"),
            frame(SETTINGS, ACK, 0),  # the ack of ours: nothing to do
            frame(PING, ACK, 0, b"87654321"),  # an ack: never answered
        )
        await asyncio.sleep(0)
        assert transport.take() == [(SETTINGS, ACK, 0, b""), (PING, ACK, 0, b"12345678")]
        assert conn.max_streams == 7 and conn.peer_max_frame == 2**20

    run(test)


def test_a_call_completes_whatever_way_the_bytes_are_split() -> None:
    async def test() -> None:
        for split in (1, 2, 7, 9, 10, 33, 10_000):
            conn, transport, server = await connect()
            transport.take()
            call = prepared()
            stream = conn.start(call)
            assert stream is not None and stream.sid == 1
            assert transport.take() == parse_frames(call.frames(1))
            reply = server.response(1)
            for i in range(0, len(reply), split):
                assert not stream.future.done()
                conn.data_received(reply[i : i + split])
            assert stream.future.result() is None and not conn.streams

    run(test)


def test_calls_multiplex_with_odd_increasing_ids_and_errors_come_from_trailers() -> None:
    async def test() -> None:
        conn, transport, server = await connect()
        streams = [conn.start(prepared()) for _ in range(3)]
        assert [s.sid for s in streams if s is not None] == [1, 3, 5]
        await asyncio.sleep(0)  # several in flight: written together at the end of the loop turn
        assert [(t, s) for t, _, s, _ in transport.take()[2:]] == [
            (1, 1),
            (0, 1),
            (1, 3),
            (0, 3),
            (1, 5),
            (0, 5),
        ]
        server.feed(server.response(5, status=3, text="unexpected shape"), server.response(1))
        server.feed(server.response(3))  # the same header blocks again: indexed, cached
        assert [s.future.result() for s in streams if s is not None] == [
            None,
            None,
            "INVALID_ARGUMENT: unexpected shape",
        ]
        # trailers-only: one HEADERS frame with the status
        stream = conn.start(prepared())
        assert stream is not None
        server.feed(
            server.headers(
                7, [(":status", "200"), ("grpc-status", "5"), ("grpc-message", "gone")], end_stream=True
            )
        )
        assert stream.future.result() == "NOT_FOUND: gone"

    run(test)


def test_a_call_started_at_once_goes_out_before_the_turn_ends_after_what_the_turn_wrote() -> None:
    async def test() -> None:
        conn, transport, _ = await connect()
        transport.take()
        conn.start(prepared())  # alone in flight: written at once
        conn.start(prepared())  # two in flight: held for the turn's end
        assert [(t, s) for t, _, s, _ in transport.take()] == [(1, 1), (0, 1)]
        conn.start(prepared(), at_once=True)  # the open loop's send: now, after the held one
        assert [(t, s) for t, _, s, _ in transport.take()] == [(1, 3), (0, 3), (1, 5), (0, 5)]
        await asyncio.sleep(0)
        assert transport.take() == []  # nothing left for the turn's end

    run(test)


def test_the_starter_writes_only_on_an_open_connection() -> None:
    async def test() -> None:
        transport = GrpcH2Transport("127.0.0.1:1")
        start = transport.starter(0)
        assert start(prepared()) is None  # not connected: the slot's sender connects
        conn, wire, _ = await connect()
        transport.channel(0).connection = conn
        wire.take()
        stream = start(prepared())
        assert stream is not None and [t for t, _, _, _ in wire.take()] == [1, 0]
        await transport.close()

    run(test)


def test_continuation_frames_of_a_response() -> None:
    async def test() -> None:
        conn, _, server = await connect()
        stream = conn.start(prepared())
        assert stream is not None
        block = server.encoder.encode([("grpc-status", "7"), ("grpc-message", "denied")])
        server.feed(
            frame(HEADERS, END_STREAM, 1, block[:3]),
            frame(CONTINUATION, 0, 1, block[3:5]),
            frame(CONTINUATION, END_HEADERS, 1, block[5:]),
        )
        assert stream.future.result() == "PERMISSION_DENIED: denied"

    run(test)


def test_an_interrupted_header_block_is_a_connection_error() -> None:
    async def test() -> None:
        conn, transport, server = await connect()
        stream = conn.start(prepared())
        assert stream is not None
        transport.take()
        server.feed(frame(HEADERS, 0, 1, b"\x88"), frame(DATA, 0, 1, b"x"))
        await asyncio.sleep(0)
        reason = stream.future.result()
        assert reason is not None and reason.startswith("PROTOCOL: HTTP/2 protocol error")
        (sent,) = transport.take()
        assert sent[0] == GOAWAY and struct.unpack_from(">L", sent[3], 4)[0] == PROTOCOL_ERROR
        assert not conn.usable and transport.closing

    run(test)


def test_bad_frames_are_connection_errors() -> None:
    async def test() -> None:
        for bad in (
            frame(SETTINGS, 0, 0, b"12345"),
            frame(WINDOW_UPDATE, 0, 0, b"123"),
            frame(PUSH_PROMISE, END_HEADERS, 1, b"\x00\x00\x00\x02\x88"),
            window_update(0, 2**31 - 1),  # pushes the connection window past 2^31-1
            frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\xff\xff\xff\x0f"),  # no such index
        ):
            conn, transport, server = await connect()
            stream = conn.start(prepared())
            assert stream is not None
            server.feed(bad)
            await asyncio.sleep(0)
            reason = stream.future.result()
            assert reason is not None and reason.startswith("PROTOCOL: "), (bad, reason)
            assert transport.closing

    run(test)


def test_reset_streams_fail_with_grpc_codes() -> None:
    async def test() -> None:
        conn, _, server = await connect()
        streams = [conn.start(prepared()) for _ in range(3)]
        for stream, code in zip(streams, (CANCEL, 7, 2), strict=True):
            assert stream is not None
            server.feed(frame(RST_STREAM, 0, stream.sid, code.to_bytes(4, "big")))
        assert [s.future.result() for s in streams if s is not None] == [
            "CANCELLED: stream reset by the server (CANCEL)",
            "UNAVAILABLE: stream reset by the server (REFUSED_STREAM)",
            "INTERNAL: stream reset by the server (INTERNAL_ERROR)",
        ]
        server.feed(frame(RST_STREAM, 0, 1, b"\x00\x00\x00\x00"))  # an old stream: ignored
        assert conn.usable

    run(test)


def test_goaway_fails_unprocessed_streams_and_retires_the_connection() -> None:
    async def test() -> None:
        conn, transport, server = await connect()
        first, second = conn.start(prepared()), conn.start(prepared())
        assert first is not None and second is not None
        await asyncio.sleep(0)
        transport.take()
        server.feed(goaway(1, 0, b"shutting down"))
        assert second.future.result() == "CONNECTION: server sent GOAWAY (NO_ERROR: shutting down)"
        assert not conn.usable and not first.future.done() and not transport.closing
        server.feed(server.response(1))  # streams up to the last id still finish
        assert first.future.result() is None
        await asyncio.sleep(0)
        assert transport.closing and transport.take() == [(GOAWAY, 0, 0, bytes(8))]

    run(test)


def test_a_lost_connection_fails_every_stream_and_waiter() -> None:
    async def test() -> None:
        conn, _, _ = await connect()
        stream = conn.start(prepared())
        conn.max_streams = 1
        waiting = asyncio.ensure_future(conn.call(prepared()))
        await asyncio.sleep(0)
        conn.connection_lost(ConnectionResetError("reset by peer"))
        assert (
            stream is not None
            and stream.future.result() == "CONNECTION: connection to test:1 lost: reset by peer"
        )
        assert (await waiting)[0] == stream.future.result()
        assert not conn.usable
        # a sender that got this connection just before it was lost fails at once, never waits
        assert conn.start(prepared()) is None
        assert (await conn.call(prepared()))[0] == stream.future.result()

    run(test)


def test_stream_limit_from_the_server_is_respected() -> None:
    async def test() -> None:
        conn, transport, server = await connect()
        server.feed(settings_frame([(SETTINGS_MAX_CONCURRENT_STREAMS, 1)]))
        first = conn.start(prepared())
        assert first is not None and conn.start(prepared()) is None  # the fast path declines
        second = asyncio.ensure_future(conn.call(prepared()))
        await asyncio.sleep(0.01)
        assert list(conn.streams) == [1]
        server.feed(server.response(1))
        await asyncio.sleep(0)
        assert list(conn.streams) == [3]
        server.feed(server.response(3, message=b"\x0a\x01z"))
        assert await second == (None, b"")

    run(test)


def test_received_data_returns_credit_in_batches() -> None:
    async def test() -> None:
        window = 2 * 65535
        conn, transport, server = await connect(window=window)
        transport.take()
        stream = conn.start(prepared())
        assert stream is not None
        chunk = frame(DATA, 0, 1, bytes(20000))
        server.feed(chunk, chunk, chunk)  # 60000 < half the window: nothing yet
        await asyncio.sleep(0)
        assert [f for f in transport.take() if f[0] == WINDOW_UPDATE] == []
        server.feed(chunk, frame(DATA, PADDED, 1, b"\x02" + bytes(100) + b"pp"))
        await asyncio.sleep(0)
        updates = [(s, int.from_bytes(p, "big")) for t, _, s, p in transport.take() if t == WINDOW_UPDATE]
        assert updates == [(0, 80000), (1, 80000)]  # connection and stream, once half the window is used
        assert conn.unacked == 103 and stream.received == 103

    run(test)


def test_large_requests_are_split_and_paced_by_the_peer_window() -> None:
    async def test() -> None:
        conn, transport, server = await connect()
        transport.take()
        message = bytes(range(256)) * 400  # 102400 bytes: over the default window and frame size
        call = prepared(message=message)
        assert conn.start(call) is None
        task = asyncio.ensure_future(conn.call(call, keep_body=True))
        await asyncio.sleep(0.01)
        frames = transport.take()
        sent = [p for t, _, _, p in frames if t == DATA]
        assert frames[0][0] == HEADERS and sum(map(len, sent)) == 65535  # the default window, no more
        assert all(len(p) <= MIN_FRAME_SIZE for p in sent)
        server.feed(window_update(0, 10**6), window_update(1, 10**6))
        await asyncio.sleep(0.01)
        frames = transport.take()
        rest = [(f, p) for t, f, _, p in frames if t == DATA]
        assert rest[-1][0] == END_STREAM and all(f == 0 for f, _ in rest[:-1])
        assert b"".join(sent + [p for _, p in rest]) == call.payload
        server.feed(server.response(1, message=b"reply"))
        assert await task == (None, b"\x00\x00\x00\x00\x05reply")

    run(test)


def test_the_last_stream_id_retires_the_connection() -> None:
    async def test() -> None:
        conn, transport, server = await connect(first_stream_id=MAX_STREAM_ID)
        stream = conn.start(prepared())
        assert stream is not None and stream.sid == MAX_STREAM_ID and not conn.usable
        server.feed(server.response(MAX_STREAM_ID))
        assert stream.future.result() is None
        await asyncio.sleep(0)
        assert transport.closing

    run(test)


def test_cancelled_calls_reset_their_stream() -> None:
    async def test() -> None:
        conn, transport, _ = await connect()
        conn.max_streams = 0
        task = asyncio.ensure_future(conn.call(prepared()))
        await asyncio.sleep(0)
        conn.max_streams = 10
        conn._wake()  # let it open its stream
        await asyncio.sleep(0)
        assert list(conn.streams) == [1]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        assert not conn.streams
        assert (RST_STREAM, 0, 1, CANCEL.to_bytes(4, "big")) in transport.take()

    run(test)


def test_transport_parses_urls_and_needs_alpn_for_tls() -> None:
    assert split_host_port("localhost:9001", GRPC_PORTS) == ("localhost", 9001)
    assert split_host_port("grpc://10.0.0.1", GRPC_PORTS) == ("10.0.0.1", 8001)
    assert split_host_port("[::1]:5", GRPC_PORTS) == ("::1", 5)
    with pytest.raises(ValueError, match="unsupported URL scheme"):
        split_host_port("ftp://x:1", GRPC_PORTS)
    transport = GrpcH2Transport("[::1]:5", headers={"X-Tenant": "a"})
    assert transport.authority == "[::1]:5" and transport.metadata == [("x-tenant", "a")]
    assert transport.channel(0) is transport.channel(63) is not transport.channel(64)


def test_kept_bodies_lose_their_padding() -> None:
    async def test() -> None:
        conn, _, server = await connect()
        task = asyncio.ensure_future(conn.call(prepared(), keep_body=True))
        await asyncio.sleep(0)
        server.feed(
            server.headers(1, [(":status", "200")]),
            frame(DATA, PADDED, 1, b"\x03" + b"\x00\x00\x00\x00\x02hi" + b"pad"),
            server.headers(1, [("grpc-status", "0")], end_stream=True),
        )
        assert await task == (None, b"\x00\x00\x00\x00\x02hi")

    run(test)


def test_make_transport_switches_the_grpc_implementation() -> None:
    from loadgen.transports import GrpcH2Transport, GrpcTransport, make_transport

    assert isinstance(make_transport("grpc", "localhost:8001"), GrpcH2Transport)  # the default
    assert isinstance(make_transport("grpc", "localhost:8001", grpc_implementation="aio"), GrpcTransport)
    with pytest.raises(ValueError, match="unknown gRPC implementation 'x'"):
        make_transport("grpc", "localhost:8001", grpc_implementation="x")
