"""HTTP streaming transport (``--streaming`` over HTTP): Triton's generate extension.

Each request is ``POST /v2/models/<model>[/versions/<v>]/generate_stream`` with a JSON body that
names the inputs (a scalar for a one-element tensor, a flat list otherwise, BYTES as UTF-8
strings), built once with the whole HTTP/1.1 request. Triton 2.51 answers 200 with a chunked body
of server-sent events: one ``data:`` event (JSON, the outputs by name) per response, an
``{"error": ...}`` event for a failed one, and no end marker: the end of the body is the final
response (an empty body: a stream with no response). A non-decoupled model answers with one
event, so generate_stream serves it too (``/generate`` refuses decoupled models). An error before
any response comes with an error status (400, 500) and the same event as body.

Each slot owns one keep-alive connection: the unary transport's (:mod:`loadgen.transports.http`:
httptools, TLS, reconnection) reading the body as events. An event is time-stamped with the
``perf_counter_ns`` of the ``data_received`` call that completed it. ``--request-timeout``
(:class:`Watchdog`) bounds the silence of a stream, not its length: every chunk received
restarts its clock, so a long generation that keeps answering is never cut.
"""

from __future__ import annotations

import json
import ssl
import time
from typing import Any

import numpy as np

from loadgen.config import REQUEST_TIMEOUT_S
from loadgen.errors import ConfigError
from loadgen.tls import TlsSettings, tls_for_url
from loadgen.transports.addresses import HTTP_PORTS, split_host_port
from loadgen.transports.base import (
    NUMPY_DTYPES,
    Arrivals,
    CapturedArrivals,
    CaptureSender,
    InferRequestSpec,
    InputTensor,
    OutputTensor,
    Sender,
    SequenceRequests,
    StreamSender,
    TaggedRequests,
    Watchdog,
)
from loadgen.transports.http import SlotConnection, answer_reason
from loadgen.transports.reasons import status_reason

ENDPOINT = "generate_stream"
_NOT_OUTPUTS = frozenset({"id", "model_name", "model_version", "parameters"})
"""Keys of a response event that are not outputs."""


# -- the request: JSON inputs by name ---------------------------------------------------------------
def _strings(tensor: InputTensor) -> list[str]:
    """The elements of a BYTES tensor (4-byte little-endian length, then the bytes) as text."""
    data, offset = tensor.data, 0
    items: list[str] = []
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 4], "little")
        item = data[offset + 4 : offset + 4 + size]
        if offset + 4 > len(data) or len(item) != size:
            raise ConfigError(f"input {tensor.name!r}: malformed BYTES tensor (element {len(items)} is cut)")
        try:
            items.append(item.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(
                f"input {tensor.name!r}: element {len(items)} is not UTF-8 text, and HTTP --streaming "
                "(Triton's generate extension) sends BYTES as JSON strings: use --protocol grpc"
            ) from None
        offset += 4 + size
    return items


def json_value(tensor: InputTensor) -> Any:
    """An input as the generate extension reads it: a scalar for one element, else a flat list
    (Triton shapes it from the model's dims; a batched model's batch is the elements' count)."""
    values: list[Any]
    if tensor.datatype == "BYTES":
        values = _strings(tensor)
    else:
        numpy_type = NUMPY_DTYPES.get(tensor.datatype)
        if numpy_type is None:
            raise ConfigError(
                f"input {tensor.name!r}: {tensor.datatype} has no JSON form for HTTP --streaming "
                "(Triton's generate extension): use --protocol grpc"
            )
        try:
            values = np.frombuffer(tensor.data, numpy_type).tolist()
        except ValueError:
            raise ConfigError(
                f"input {tensor.name!r}: {len(tensor.data)} bytes are no whole {tensor.datatype} values"
            ) from None
    return values[0] if len(values) == 1 else values


def build_generate_request(
    spec: InferRequestSpec, host: str, port: int, headers: dict[str, str] | None = None
) -> bytes:
    """The whole HTTP/1.1 generate_stream request (headers and JSON body) for ``spec``."""
    inputs: dict[str, Any] = {tensor.name: json_value(tensor) for tensor in spec.inputs}
    if spec.parameters:
        inputs["parameters"] = dict(spec.parameters)
    try:
        body = json.dumps(inputs, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        raise ConfigError(
            f"model {spec.model!r}: an input holds NaN or infinity, which JSON cannot carry "
            "(HTTP --streaming): use --protocol grpc"
        ) from None
    version = f"/versions/{spec.model_version}" if spec.model_version else ""
    lines = [
        f"POST /v2/models/{spec.model}{version}/{ENDPOINT} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# -- the answer: server-sent events -----------------------------------------------------------------
def event_data(event: bytes) -> bytes | None:
    """The ``data`` of one event (its ``data:`` lines joined by newlines); None for an event
    without data (comments, other fields only)."""
    if event.startswith(b"data: ") and b"\n" not in event:  # Triton's events: one data line
        return event[6:]
    lines = [line[5:] for line in event.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    return b"\n".join(line[1:] if line.startswith(b" ") else line for line in lines)


class EventSplitter:
    """Events out of a body that arrives in chunks cut anywhere: :meth:`feed` returns the data of
    every event a chunk completes (an event ends at a blank line); the rest waits for more."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = b""
        """The start of an event not complete yet (discarded by :meth:`reset`, as SSE says)."""

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self.pending + chunk if self.pending else chunk
        if b"\r" in buffer:  # CRLF lines (a lone CR stays: its LF may be in the next chunk)
            buffer = buffer.replace(b"\r\n", b"\n")
        if b"\n\n" not in buffer:
            self.pending = buffer
            return []
        *events, self.pending = buffer.split(b"\n\n")
        return [data for event in events if (data := event_data(event)) is not None]

    def reset(self) -> None:
        self.pending = b""


def read_event(data: bytes, token_output: str = "") -> tuple[str | None, int]:
    """(the error message of an error event, else None; the tokens the event carries: -1 without
    outputs, else 1, or with ``token_output`` the elements of that output)."""
    try:
        event = json.loads(data)
    except (ValueError, RecursionError):
        return "an event of the stream is not JSON", -1
    if not isinstance(event, dict):
        return "an event of the stream is not a JSON object", -1
    if "error" in event:
        return str(event["error"]), -1
    if not any(key not in _NOT_OUTPUTS for key in event):
        return None, -1
    if not token_output:
        return None, 1
    value = event.get(token_output)
    return None, len(value) if isinstance(value, list) else 0 if value is None else 1


def json_tensor(name: str, value: Any) -> OutputTensor:
    """An output of an event as a tensor (``--validate``): events carry values without their
    datatype, so strings become BYTES, booleans BOOL, integers INT64 and other numbers FP64. The
    reference streams come through the same path, so both sides of a comparison agree; a value of
    another form (a ragged list, an object) is kept as its JSON text."""
    try:
        array = np.asarray(value) if isinstance(value, list | str | bool | int | float) else None
    except ValueError:  # a ragged list
        array = None
    kind = array.dtype.kind if array is not None else "O"
    if array is not None and kind in "U":
        items = [item.encode() for item in array.ravel().tolist()]
        data = b"".join(len(item).to_bytes(4, "little") + item for item in items)
        return OutputTensor(name, "BYTES", array.shape, data)
    if array is not None and kind in "biuf":
        datatype, numpy_type = {"b": ("BOOL", "?"), "f": ("FP64", "<f8")}.get(kind, ("INT64", "<i8"))
        return OutputTensor(name, datatype, array.shape, array.astype(numpy_type).tobytes())
    text = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
    return OutputTensor(name, "BYTES", (1,), len(text).to_bytes(4, "little") + text)


def event_outputs(data: bytes) -> dict[str, OutputTensor]:
    """The outputs of a response event (one :func:`read_event` found valid), by name."""
    event = json.loads(data)
    return {name: json_tensor(name, value) for name, value in event.items() if name not in _NOT_OUTPUTS}


def error_status_reason(status: int, body: bytes) -> str:
    """The reason of an error status: its body is JSON (``{"error": ...}``) or, where the model
    failed before any response, an event holding that JSON."""
    if body.startswith(b"data:"):
        events = EventSplitter().feed(body + b"\n\n")
        if events:
            body = events[0]
    return answer_reason(status, body)


class _StreamConnection(SlotConnection):
    """One keep-alive connection reading each answer as a stream of events; ``stream`` returns
    when the body ends (an error event fails the request then: the connection stays usable)."""

    def __init__(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None = None, token_output: str = ""
    ) -> None:
        super().__init__(host, port, ssl_context)
        self._token_output = token_output
        self._events = EventSplitter()
        self._arrivals = Arrivals()
        self._stream_error: str | None = None
        self._received_at = 0
        """perf_counter_ns of the ``data_received`` call being parsed: every event it completes."""

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._received_at = time.perf_counter_ns()
        self.sent_at = self._loop.time()  # the watchdog bounds the silence, not the stream
        super().data_received(data)

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._events.reset()
        self._stream_error = None

    def on_body(self, body: bytes) -> None:
        if self._status != 200:
            self._error_body.append(body)
            return
        if self._stream_error is not None:
            return
        for data in self._events.feed(body):
            error, tokens = read_event(data, self._token_output)
            if error is not None:
                self._stream_error = status_reason("INTERNAL", error)
                return
            if tokens >= 0:
                self._arrivals.append(self._received_at)
                self._arrivals.tokens += tokens
                if isinstance(self._arrivals, CapturedArrivals):  # --validate
                    self._arrivals.responses.append(event_outputs(data))

    def on_message_complete(self) -> None:
        if self._status == 200:
            reason = self._stream_error
        else:
            reason = error_status_reason(self._status, b"".join(self._error_body))
        if not self._parser.should_keep_alive():
            self._close()
        self._finish(reason)

    # -- sending ---------------------------------------------------------------------------------
    async def stream(self, request: bytes, arrivals: Arrivals) -> str | None:
        self._arrivals = arrivals
        return await self.send(request)


class HttpStreamTransport:
    """``--streaming`` over HTTP/1.1 (Triton's generate_stream); see the module docstring."""

    name = "http"

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        tls: TlsSettings | None = None,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        token_output: str = "",
    ) -> None:
        self.token_output = token_output
        self.host, self.port = split_host_port(url, HTTP_PORTS)
        self.headers = dict(headers or {})
        tls = tls_for_url(url, tls)
        self._ssl = tls.ssl_context() if tls is not None else None
        self._connections: list[_StreamConnection] = []
        self._watchdog = Watchdog(request_timeout_s, self._expire, "http-stream-watchdog")

    def prepare(self, request: InferRequestSpec) -> bytes:
        """The generate_stream request; ConfigError for inputs JSON cannot carry."""
        return build_generate_request(request, self.host, self.port, self.headers)

    def _connection(self, slot: int) -> _StreamConnection:
        """Slot i always uses connection i: steps run one after another, so they can share it."""
        self._watchdog.start()
        while len(self._connections) <= slot:
            self._connections.append(_StreamConnection(self.host, self.port, self._ssl, self.token_output))
        return self._connections[slot]

    def prepare_sequence(self, request: InferRequestSpec) -> SequenceRequests:
        raise ConfigError("a sequence model over --streaming: not supported yet; drop --streaming")

    def prepare_tagged(self, request: InferRequestSpec) -> TaggedRequests:
        raise ConfigError("--trace-rate with --streaming: not supported yet; drop one of them")

    def stream_sender(self, slot: int) -> StreamSender:
        return self._connection(slot).stream

    def sender(self, slot: int) -> Sender:
        """A whole stream as one request (its responses are not timed)."""
        stream = self._connection(slot).stream
        scratch = Arrivals()

        async def send(request: bytes) -> str | None:
            scratch.clear()
            return await stream(request, scratch)

        return send

    def starter(self, slot: int) -> None:
        """None: a stream is read by its sender as it arrives."""
        return None

    def capture_sender(self, slot: int) -> CaptureSender:
        raise NotImplementedError("--streaming --validate captures whole streams: stream_sender")

    def parse_outputs(self, response: Any) -> dict[str, OutputTensor]:
        raise NotImplementedError("--streaming --validate captures whole streams: stream_sender")

    def _expire(self, limit: float, reason: str) -> None:
        for connection in self._connections:
            if connection.waiting and connection.sent_at < limit:
                connection.expire(f"{reason} (connection dropped)")

    async def close(self) -> None:
        self._watchdog.stop()
        for connection in self._connections:
            connection.close()
        self._connections.clear()
