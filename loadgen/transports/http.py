"""HTTP transport: an asyncio Protocol per in-flight slot writing pre-built request bytes.

Requests use the KServe v2 binary tensor extension (a JSON header followed by raw
tensor bytes), built once. Responses are parsed with ``httptools`` (llhttp, the
parser uvicorn uses) and their bodies are only read on errors. Each slot owns one
keep-alive connection, so there is no pool that could cap concurrency or queue
requests inside the client where their wait would be hidden. With TLS (HTTPS) each
connection does its own handshake with one shared ``ssl.SSLContext`` (:mod:`loadgen.tls`).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import replace
from typing import Any, cast

import httptools
import numpy as np

from loadgen.config import REQUEST_TIMEOUT_S
from loadgen.tls import TlsSettings, tls_for_url
from loadgen.transports.addresses import HTTP_PORTS, split_host_port
from loadgen.transports.base import (
    NUMPY_DTYPES,
    CaptureSender,
    InferRequestSpec,
    InputTensor,
    OutputTensor,
    Sender,
    SequenceRequests,
    SplicedRequest,
    Starter,
    TaggedRequests,
    Watchdog,
)
from loadgen.transports.reasons import cannot_connect, connection_lost, http_reason, status_reason


def _where(tensor: InputTensor) -> dict[str, Any]:
    """Where an input's bytes are: after the JSON header (the binary-data extension), or in a
    registered shared-memory region."""
    if tensor.shared_memory is None:
        return {"binary_data_size": len(tensor.data)}
    region, offset = tensor.shared_memory
    return {
        "shared_memory_region": region,
        "shared_memory_offset": offset,
        "shared_memory_byte_size": len(tensor.data),
    }


def _output_where(spec: InferRequestSpec, index: int) -> dict[str, Any]:
    """Where the server puts an output: in the response (binary), or in a shared-memory slice."""
    if not spec.output_memory:
        return {"binary_data": True}
    region, offset, size = spec.output_memory[index]
    return {"shared_memory_region": region, "shared_memory_offset": offset, "shared_memory_byte_size": size}


def build_request(
    spec: InferRequestSpec, host: str, port: int, headers: dict[str, str] | None = None, request_id: str = ""
) -> bytes:
    """The whole HTTP/1.1 request (headers and body) for ``spec``; ``request_id``: the header's
    ``id`` (a traced request's, see :class:`~loadgen.transports.base.SplicedRequest`)."""
    header: dict[str, Any] = {"id": request_id} if request_id else {}
    header |= {
        "inputs": [
            {"name": t.name, "shape": list(t.shape), "datatype": t.datatype, "parameters": _where(t)}
            for t in spec.inputs
        ],
        "outputs": [
            {"name": name, "parameters": _output_where(spec, i)} for i, name in enumerate(spec.outputs)
        ],
    }
    if spec.parameters:
        header["parameters"] = dict(spec.parameters)
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    body = header_bytes + b"".join(t.data for t in spec.inputs if t.shared_memory is None)
    version = f"/versions/{spec.model_version}" if spec.model_version else ""
    lines = [
        f"POST /v2/models/{spec.model}{version}/infer HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/octet-stream",
        f"Inference-Header-Content-Length: {len(header_bytes)}",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def answer_reason(status: int, body: bytes) -> str:
    try:
        message = str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError, RecursionError):
        message = body.decode("utf-8", "replace").strip()
    return http_reason(status, message)


CLOSE_TIMEOUT_S = 2.0
"""How long closing waits for TLS connections to say goodbye before it drops them."""


class SlotConnection(asyncio.Protocol):
    """One keep-alive connection; ``send`` awaits one response at a time."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self.host, self.port = host, port
        self._ssl = ssl_context
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[str | None] | None = None
        self._status = 0
        self._error_body: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self.sent_at = 0.0
        """Loop time of the last send: the transport's watchdog fails a request left unanswered."""
        self._closed: asyncio.Future[None] | None = None
        """Set while a transport we closed has not reported ``connection_lost`` yet."""
        self._closing: asyncio.Transport | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport, though uvloop's does not subclass asyncio.Transport
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(f"PROTOCOL: bad HTTP response: {exc}")
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        closed = self._closed
        if closed is not None:  # the transport we closed ourselves: its waiter is already answered
            self._closed = None
            if not closed.done():
                closed.set_result(None)
            return
        self._transport = None
        self._parser = httptools.HttpResponseParser(self)  # lost mid-answer: the next one starts afresh
        self._finish(connection_lost(f"{self.host}:{self.port}", exc))

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._error_body.clear()

    def on_status(self, status: bytes) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self._status != 200:
            self._error_body.append(body)

    def on_message_complete(self) -> None:
        reason = None if self._status == 200 else answer_reason(self._status, b"".join(self._error_body))
        if not self._parser.should_keep_alive():
            self._close()
        self._finish(reason)

    # -- sending ---------------------------------------------------------------------------------
    def _finish(self, reason: str | None) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(reason)

    def _close(self) -> None:
        if self._transport is not None:
            self._closed = self._loop.create_future()
            self._closing = self._transport
            self._transport.close()
            self._transport = None
        self._parser = httptools.HttpResponseParser(self)

    def expire(self, reason: str) -> None:
        """Fail the request in flight and drop the connection (the next send reconnects)."""
        self._finish(reason)
        self._close()

    def start(self, request: bytes) -> asyncio.Future[str | None] | None:
        """Write ``request`` now; the future its answer resolves. None when not connected (the
        caller then awaits :meth:`send`, which connects). A caller that gives a request up cancels
        its future: the next send drops the connection, whose late answer would otherwise be
        taken for the next request's."""
        if self._waiter is not None:  # the last request was given up unanswered
            self._close()
            self._waiter = None
        if self._transport is None:
            return None
        waiter: asyncio.Future[str | None] = self._loop.create_future()
        self._waiter = waiter
        self.sent_at = self._loop.time()
        self._transport.write(request)
        return waiter

    async def send(self, request: bytes) -> str | None:
        waiter = self.start(request)
        if waiter is None:
            if self._closed is not None:  # let the old transport report its loss before reusing self
                await asyncio.wait([self._closed], timeout=1.0)
                self._closed = None
            try:
                await self._loop.create_connection(
                    lambda: self,
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl is not None else None,
                )
            except OSError as exc:
                return cannot_connect(f"{self.host}:{self.port}", exc)
            waiter = self.start(request)
            if waiter is None:  # lost again at once
                return connection_lost(f"{self.host}:{self.port}", None)
        try:
            return await waiter
        except asyncio.CancelledError:  # its answer may still come: never let it answer the next request
            self._close()
            raise

    @property
    def waiting(self) -> bool:
        return self._waiter is not None and not self._waiter.done()

    def close(self) -> asyncio.Future[None] | None:
        """Close; the future the closing transport's loss resolves (None: nothing to wait for)."""
        self._close()
        closed = self._closed
        return closed if closed is not None and not closed.done() else None

    def abort(self) -> None:
        """Drop a transport that did not finish closing (a TLS peer that never said goodbye)."""
        closing, self._closing = self._closing, None
        closed = self._closed
        if closing is not None and closed is not None and not closed.done():
            closing.abort()


class _CapturingConnection(SlotConnection):
    """A connection that keeps each response (``--validate``): header length and whole body."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(host, port, ssl_context)
        self.header_length: int | None = None
        self.body: list[bytes] = []

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.header_length, self.body = None, []

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"inference-header-content-length":
            self.header_length = int(value)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self.body.append(body)

    async def capture(self, request: bytes) -> tuple[str | None, dict[str, OutputTensor]]:
        """The reason and the outputs: a 200 whose body is no inference response fails as INTERNAL
        (as the gRPC clients fail an unreadable message) instead of breaking ``--validate``."""
        error = await self.send(request)
        if error is not None:
            return error, {}
        try:
            return None, parse_response(self.header_length, b"".join(self.body))
        except ValueError as exc:
            return status_reason("INTERNAL", str(exc)), {}


_MALFORMED = (KeyError, TypeError, ValueError, AttributeError, OverflowError)
"""What reading a peer's JSON as an output raises where it is not one (a missing key, a wrong type)."""


def parse_response(header_length: int | None, body: bytes) -> dict[str, OutputTensor]:
    """Outputs of a v2 inference response: binary (after the JSON header) or JSON ``data``;
    ValueError (one line) for a body that is not one."""
    try:
        header = json.loads(body[:header_length] if header_length is not None else body)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"the response's header is not JSON ({type(exc).__name__})") from None
    entries = header.get("outputs", []) if isinstance(header, dict) else None
    if not isinstance(entries, list) or not all(isinstance(out, dict) for out in entries):
        raise ValueError("the response's header has no list of outputs")
    offset = header_length or 0
    outputs = {}
    for out in entries:
        try:
            name, datatype = str(out["name"]), str(out["datatype"])
            shape = tuple(int(d) for d in out.get("shape", []))
            size = (out.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                data = body[offset : offset + int(size)]
                offset += int(size)
            elif datatype == "BYTES":
                items = [v.encode() for v in out.get("data", [])]  # JSON gives BYTES as strings
                data = b"".join(len(v).to_bytes(4, "little") + v for v in items)
            else:
                data = np.asarray(out.get("data", []), dtype=NUMPY_DTYPES.get(datatype, "<f4")).tobytes()
        except _MALFORMED as exc:
            raise ValueError(
                f"output {out.get('name')!r} of the response is malformed ({type(exc).__name__})"
            ) from None
        output = OutputTensor(name, datatype, shape, data)
        if (problem := output.size_problem()) is not None:
            raise ValueError(problem)
        outputs[name] = output
    return outputs


class HttpTransport:
    """Inference over HTTP/1.1 with pre-built requests; see the module docstring."""

    name = "http"

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        tls: TlsSettings | None = None,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.host, self.port = split_host_port(url, HTTP_PORTS)
        self.headers = dict(headers or {})
        tls = tls_for_url(url, tls)
        # one context for every connection: certificates are read once
        self._ssl = tls.ssl_context() if tls is not None else None
        self._connections: list[SlotConnection] = []
        self._capturing: list[_CapturingConnection] = []
        self._watchdog = Watchdog(request_timeout_s, self._expire, "http-watchdog")

    def prepare(self, request: InferRequestSpec) -> bytes:
        return build_request(request, self.host, self.port, self.headers)

    def prepare_sequence(self, request: InferRequestSpec) -> SequenceRequests:
        return _HttpSequence(request, self.host, self.port, self.headers)

    def prepare_tagged(self, request: InferRequestSpec) -> TaggedRequests:
        placeholder = SplicedRequest.PLACEHOLDER.decode()
        return SplicedRequest(build_request(request, self.host, self.port, self.headers, placeholder))

    def _connection(self, slot: int) -> SlotConnection:
        """Slot i always uses connection i: steps run one after another, so they can share it."""
        self._watchdog.start()
        while len(self._connections) <= slot:
            self._connections.append(SlotConnection(self.host, self.port, self._ssl))
        return self._connections[slot]

    def sender(self, slot: int) -> Sender:
        return self._connection(slot).send

    def starter(self, slot: int) -> Starter:
        """The slot's :meth:`SlotConnection.start`, on the connection its sender uses."""
        return self._connection(slot).start

    def _expire(self, limit: float, reason: str) -> None:
        for connection in (*self._connections, *self._capturing):
            if connection.waiting and connection.sent_at < limit:
                connection.expire(f"{reason} (connection dropped)")

    def capture_sender(self, slot: int) -> CaptureSender:
        self._watchdog.start()
        while len(self._capturing) <= slot:
            self._capturing.append(_CapturingConnection(self.host, self.port, self._ssl))
        return self._capturing[slot].capture

    def parse_outputs(self, response: dict[str, OutputTensor]) -> dict[str, OutputTensor]:
        """The outputs :meth:`_CapturingConnection.capture` has read already."""
        return response

    async def close(self) -> None:
        """Close every connection and wait (CLOSE_TIMEOUT_S at most, then abort) until they are
        gone: a TLS connection needs a few turns of the loop to say goodbye, and uvloop refuses
        to close a loop that still holds one."""
        self._watchdog.stop()
        connections = (*self._connections, *self._capturing)
        pending = [closed for connection in connections if (closed := connection.close()) is not None]
        if pending:
            _, late = await asyncio.wait(pending, timeout=CLOSE_TIMEOUT_S)
            if late:
                for connection in connections:
                    connection.abort()
                await asyncio.sleep(0)  # let the aborted transports report their loss
        self._connections.clear()
        self._capturing.clear()


class _HttpSequence:
    """A sequence model's request over HTTP: the sequence parameters sit in the JSON header, whose
    length the request's headers carry, so each send builds its request (the inputs are joined
    again: one copy)."""

    __slots__ = ("headers", "host", "port", "spec")

    def __init__(self, spec: InferRequestSpec, host: str, port: int, headers: dict[str, str]) -> None:
        self.spec, self.host, self.port, self.headers = spec, host, port, headers

    def request(self, sequence_id: int | str, start: bool, end: bool) -> bytes:
        own = (("sequence_id", sequence_id), ("sequence_start", start), ("sequence_end", end))
        spec = replace(self.spec, parameters=(*self.spec.parameters, *own))
        return build_request(spec, self.host, self.port, self.headers)
