"""HTTP ``--streaming`` (Triton's generate_stream): the JSON request, the server-sent-event splitter,
and the connection against a loopback server that scripts the wire (chunks, pauses, a cut)."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Awaitable, Callable

import pytest

from loadgen.errors import ConfigError
from loadgen.transports import make_transport
from loadgen.transports.base import Arrivals, InferRequestSpec, InputTensor
from loadgen.transports.http_stream import (
    EventSplitter,
    HttpStreamTransport,
    build_generate_request,
    error_status_reason,
    event_outputs,
    read_event,
)
from loadgen.transports.reasons import is_connection_failure
from loadgen.validation import decode_tensor


def _bytes_tensor(name: str, *items: bytes) -> InputTensor:
    data = b"".join(len(item).to_bytes(4, "little") + item for item in items)
    return InputTensor(name, "BYTES", (len(items),), data)


def _body(spec: InferRequestSpec, headers: dict[str, str] | None = None) -> tuple[list[str], object]:
    head, _, body = build_generate_request(spec, "127.0.0.1", 8000, headers).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    assert int(fields["Content-Length"]) == len(body)
    assert fields["Content-Type"] == "application/json"
    return lines, json.loads(body)


# -- the request ------------------------------------------------------------------------------------
def test_inputs_become_json_by_name_scalars_for_one_element() -> None:
    spec = InferRequestSpec(
        "token_stream",
        (
            _bytes_tensor("PROMPT", "héllo".encode()),
            InputTensor("MAX_TOKENS", "INT32", (1,), struct.pack("<i", 3)),
            InputTensor("INPUT0", "FP32", (1, 3), struct.pack("<3f", 0.5, -1.0, 2.25)),
            InputTensor("IDS", "INT32", (2,), struct.pack("<2i", 7, -8)),
            _bytes_tensor("WORDS", b"a", b""),
        ),
        model_version="2",
    )
    lines, body = _body(spec, {"Authorization": "Bearer x"})
    assert lines[0] == "POST /v2/models/token_stream/versions/2/generate_stream HTTP/1.1"
    assert "Authorization: Bearer x" in lines
    assert body == {
        "PROMPT": "héllo",
        "MAX_TOKENS": 3,
        "INPUT0": [0.5, -1.0, 2.25],
        "IDS": [7, -8],
        "WORDS": ["a", ""],
    }


def test_fp32_values_round_trip_exactly() -> None:
    values = (0.1, 1e-30, 3.4e38)
    tensor = InputTensor("X", "FP32", (3,), struct.pack("<3f", *values))
    _, body = _body(InferRequestSpec("m", (tensor,)))
    assert isinstance(body, dict)
    assert struct.pack("<3f", *body["X"]) == tensor.data  # read back as FP32: the same bits


def test_inputs_json_cannot_carry_are_refused_in_one_line() -> None:
    binary = InferRequestSpec("m", (_bytes_tensor("PROMPT", b"ok", b"\xff\xfe"),))
    with pytest.raises(ConfigError, match=r"input 'PROMPT': element 1 is not UTF-8 text.*--protocol grpc"):
        build_generate_request(binary, "h", 1)
    cut = InferRequestSpec("m", (InputTensor("PROMPT", "BYTES", (1,), b"\x05\x00\x00\x00ab"),))
    with pytest.raises(ConfigError, match="malformed BYTES"):
        build_generate_request(cut, "h", 1)
    nan = InferRequestSpec("m", (InputTensor("X", "FP32", (1,), struct.pack("<f", float("nan"))),))
    with pytest.raises(ConfigError, match="NaN or infinity"):
        build_generate_request(nan, "h", 1)
    bf16 = InferRequestSpec("m", (InputTensor("X", "BF16", (1,), b"\x00\x00"),))
    with pytest.raises(ConfigError, match="BF16 has no JSON form"):
        build_generate_request(bf16, "h", 1)
    with pytest.raises(ConfigError) as caught:
        HttpStreamTransport("127.0.0.1:1").prepare(binary)
    assert "\n" not in str(caught.value)


def test_streaming_over_http_makes_the_generate_transport() -> None:
    assert isinstance(make_transport("http", "127.0.0.1:1", streaming=True), HttpStreamTransport)


# -- server-sent events -----------------------------------------------------------------------------
EVENTS = (
    b'data: {"INDEX":0,"TOKEN":"a-0","model_name":"token_stream","model_version":"1"}\n\n'
    b'data: {"INDEX":1,"TOKEN":"a-1","model_name":"token_stream","model_version":"1"}\n\n'
    b'data: {"error":"failed after 2 responses"}\n\n'
)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 40, 84, 85, 86, 200, len(EVENTS)])
def test_events_split_the_same_wherever_chunks_are_cut(size: int) -> None:
    splitter = EventSplitter()
    events = [e for at in range(0, len(EVENTS), size) for e in splitter.feed(EVENTS[at : at + size])]
    assert [read_event(e) for e in events] == [
        (None, 1),
        (None, 1),
        ("failed after 2 responses", -1),
    ]
    assert splitter.pending == b""


def test_an_event_is_complete_only_at_its_blank_line() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b'data: {"A":1}\n') == []  # the blank line is still to come
    assert splitter.feed(b'\ndata: {"B"') == [b'{"A":1}']  # split between its two newlines
    assert splitter.feed(b":2}\n\ndata: {}\n\n") == [b'{"B":2}', b"{}"]  # two in one chunk
    splitter.feed(b"data: cut")
    splitter.reset()  # a new answer: what was left of the last one is dropped
    assert splitter.feed(b'data: {"C":3}\n\n') == [b'{"C":3}']


def test_events_read_as_sse_says() -> None:
    splitter = EventSplitter()
    wire = b': a comment\r\n\r\nevent: x\r\ndata:{"A":\r\ndata: 1}\r\n\r\nid: 7\n\n'
    assert [e for at in range(len(wire)) for e in splitter.feed(wire[at : at + 1])] == [b'{"A":\n1}']
    assert read_event(b'{"model_name":"m","model_version":"1","id":"x"}') == (None, -1)  # no outputs
    assert read_event(b"not json") == ("an event of the stream is not JSON", -1)
    assert read_event(b"[1]") == ("an event of the stream is not a JSON object", -1)
    assert read_event(b'{"TOKENS":["a","b","c"],"INDEX":0}', "TOKENS") == (None, 3)  # --token-output
    assert read_event(b'{"TOKENS":"a","INDEX":0}', "TOKENS") == (None, 1)
    assert read_event(b'{"INDEX":0}', "TOKENS") == (None, 0)


def test_event_outputs_become_tensors_validate_can_compare() -> None:
    """Events carry values without datatypes: the same event always gives the same tensors, and
    values that differ give different bytes."""
    event = b'{"model_name":"m","TOKEN":"ab-1","INDEX":3,"SCORES":[0.5,1.25],"OK":[true,false],'
    event += b'"X":[[1],[2,3]]}'
    outputs = event_outputs(event)
    assert set(outputs) == {"TOKEN", "INDEX", "SCORES", "OK", "X"}
    assert (outputs["TOKEN"].datatype, decode_tensor(outputs["TOKEN"]).tolist()) == ("BYTES", [b"ab-1"])
    assert (outputs["INDEX"].datatype, decode_tensor(outputs["INDEX"]).tolist()) == ("INT64", [3])
    assert outputs["INDEX"].shape == ()
    assert (outputs["SCORES"].datatype, decode_tensor(outputs["SCORES"]).tolist()) == ("FP64", [0.5, 1.25])
    assert (outputs["OK"].datatype, decode_tensor(outputs["OK"]).tolist()) == ("BOOL", [True, False])
    assert outputs["X"].datatype == "BYTES" and decode_tensor(outputs["X"]).tolist() == [b"[[1],[2,3]]"]
    assert all(tensor.size_problem() is None for tensor in outputs.values())
    assert event_outputs(event) == outputs
    assert event_outputs(event.replace(b"ab-1", b"ab-2"))["TOKEN"] != outputs["TOKEN"]


def test_an_error_status_reads_its_json_or_its_event() -> None:
    assert error_status_reason(400, b'data: {"error":"MAX_TOKENS must be >= 0"}\n\n') == (
        "INVALID_ARGUMENT: MAX_TOKENS must be >= 0"
    )
    assert (
        error_status_reason(404, b'{"error":"[request id: 1] unknown model"}') == "NOT_FOUND: unknown model"
    )
    assert error_status_reason(502, b"bad gateway") == "HTTP 502: bad gateway"


# -- the connection, against a scripted loopback server ---------------------------------------------
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]
"""Answers the n-th request of a connection; False closes the connection."""

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _event(index: int) -> bytes:
    return b'data: {"INDEX":%d,"model_name":"m","model_version":"1"}\n\n' % index


async def _read_request(reader: asyncio.StreamReader) -> dict[str, object]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(h.split(b": ")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")
    )
    body = json.loads(await reader.readexactly(length))
    assert isinstance(body, dict)
    return body


def _run(script: Script, sends: int, timeout_s: float = 0.0) -> tuple[list[str | None], list[Arrivals], int]:
    """Each send's reason and arrivals (perf_counter_ns), and how many connections were made."""
    handlers: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]  # a task runs this
        n = 0
        try:
            while await script(reader, writer, n):
                n += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client dropped the connection
        finally:
            writer.close()

    async def main() -> tuple[list[str | None], list[Arrivals]]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport = HttpStreamTransport(f"127.0.0.1:{port}", request_timeout_s=timeout_s)
        request = transport.prepare(InferRequestSpec("m", (InputTensor("COUNT", "INT32", (1,), bytes(4)),)))
        send = transport.stream_sender(0)
        reasons, arrivals = [], []
        for _ in range(sends):
            got = Arrivals()
            reasons.append(await asyncio.wait_for(send(request, got), 10))
            arrivals.append(got)
        await transport.close()
        await asyncio.wait(handlers, timeout=5)  # each sees its connection end and closes its side
        server.close()
        await server.wait_closed()
        return reasons, arrivals

    reasons, arrivals = asyncio.run(main())
    return reasons, arrivals, len(handlers)


def test_each_event_is_timed_as_it_arrives_and_the_body_end_is_the_final_response() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        await _read_request(reader)
        writer.write(SSE_HEAD + _chunk(_event(0)[:10]))  # an event cut in two, 30 ms apart
        await writer.drain()
        await asyncio.sleep(0.03)
        writer.write(_chunk(_event(0)[10:] + _event(1)))  # its end and a whole event: one chunk
        await writer.drain()
        await asyncio.sleep(0.03)
        writer.write(_chunk(_event(2)) + b"0\r\n\r\n")
        await writer.drain()
        return n < 1

    reasons, arrivals, connections = _run(script, 2)
    assert reasons == [None, None] and connections == 1  # keep-alive: both on one connection
    for times in arrivals:
        assert len(times) == 3 and times[0] == times[1]  # completed by the same chunk
        assert 0.02e9 <= times[2] - times[1] <= 0.2e9


def test_an_empty_body_is_a_stream_without_responses() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        await _read_request(reader)
        writer.write(SSE_HEAD + b"0\r\n\r\n")
        await writer.drain()
        return True

    reasons, arrivals, _ = _run(script, 2)
    assert reasons == [None, None] and arrivals == [[], []]


def test_errors_fail_the_request_and_keep_the_connection() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        await _read_request(reader)
        if n == 0:  # an error in the middle of the stream: still 200
            body = _chunk(_event(0)) + _chunk(b'data: {"error":"failed after 1 responses"}\n\n')
            writer.write(SSE_HEAD + body + b"0\r\n\r\n")
        elif n == 1:  # the model failed before any response: an error status, the event as body
            event = b'data: {"error":"[request id: 9] MAX_TOKENS must be >= 0, not -1"}\n\n'
            writer.write(SSE_HEAD.replace(b"200 OK", b"400 Bad Request") + _chunk(event) + b"0\r\n\r\n")
        else:
            writer.write(SSE_HEAD + _chunk(_event(0)) + b"0\r\n\r\n")
        await writer.drain()
        return True

    reasons, arrivals, connections = _run(script, 3)
    assert reasons == [
        "INTERNAL: failed after 1 responses",
        "INVALID_ARGUMENT: MAX_TOKENS must be >= 0, not -1",
        None,
    ]
    assert len(arrivals[2]) == 1 and connections == 1


def test_a_stream_cut_midway_is_a_lost_connection_and_the_next_send_reconnects() -> None:
    answered = [0]

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        await _read_request(reader)
        answered[0] += 1
        if answered[0] == 1:
            writer.write(SSE_HEAD + _chunk(_event(0)) + b"5")  # cut inside the next chunk's size
        else:  # on a new connection: read by a new parser, not as the rest of the cut answer
            writer.write(SSE_HEAD + _chunk(_event(0) + _event(1)) + b"0\r\n\r\n")
        await writer.drain()
        return answered[0] > 1

    reasons, arrivals, connections = _run(script, 3)
    cut = reasons[0]
    assert cut is not None and cut.startswith("CONNECTION: connection to 127.0.0.1:")
    assert is_connection_failure(cut)
    assert reasons[1:] == [None, None] and connections == 2
    assert [len(times) for times in arrivals] == [1, 2, 2]  # the cut one: what came before the cut


def test_a_silent_stream_times_out_but_a_slow_one_does_not() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        await _read_request(reader)
        writer.write(SSE_HEAD)
        for index in range(5 if n == 0 else 1):  # 5 x 0.3 s: longer than the timeout, never silent
            await asyncio.sleep(0.3)
            writer.write(_chunk(_event(index)))
            await writer.drain()
        if n == 0:
            writer.write(b"0\r\n\r\n")
            return True
        await reader.read()  # then silence, until the client drops the connection
        return False

    reasons, arrivals, connections = _run(script, 2, timeout_s=1.0)
    assert reasons[0] is None and len(arrivals[0]) == 5
    assert reasons[1] == "DEADLINE_EXCEEDED: no response within 1 s (connection dropped)"
