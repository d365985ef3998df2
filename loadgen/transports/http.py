"""HTTP transport: an asyncio Protocol per in-flight slot writing pre-built request bytes.

Requests use the KServe v2 binary tensor extension (a JSON header followed by raw
tensor bytes), built once. Responses are parsed with ``httptools`` (llhttp, the
parser uvicorn uses) and their bodies are only read on errors. Each slot owns one
keep-alive connection, so there is no pool that could cap concurrency or queue
requests inside the client where their wait would be hidden.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

import httptools

from loadgen.transports.base import InferRequestSpec, Sender

MAX_REASON = 300
DEFAULT_PORT = 8000


def split_host_port(url: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    parts = urlsplit(url if "//" in url else f"//{url}")
    if parts.scheme not in ("", "http"):
        raise ValueError(f"unsupported URL scheme in {url!r}: use host:port or http://host:port")
    return parts.hostname or "localhost", parts.port or default_port


def build_request(
    spec: InferRequestSpec, host: str, port: int, headers: dict[str, str] | None = None
) -> bytes:
    """The whole HTTP/1.1 request (headers and body) for ``spec``."""
    header = {
        "inputs": [
            {
                "name": t.name,
                "shape": list(t.shape),
                "datatype": t.datatype,
                "parameters": {"binary_data_size": len(t.data)},
            }
            for t in spec.inputs
        ],
        "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in spec.outputs],
    }
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    body = header_bytes + b"".join(t.data for t in spec.inputs)
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


def _error_reason(status: int, body: bytes) -> str:
    try:
        message = str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        message = body.decode("utf-8", "replace").strip()
    return f"HTTP {status}: {message}"[:MAX_REASON]


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``send`` awaits one response at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[str | None] | None = None
        self._status = 0
        self._error_body: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(f"PROTOCOL: bad HTTP response: {exc}")
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._finish("UNAVAILABLE: connection lost")

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._error_body.clear()

    def on_status(self, status: bytes) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self._status != 200:
            self._error_body.append(body)

    def on_message_complete(self) -> None:
        reason = None if self._status == 200 else _error_reason(self._status, b"".join(self._error_body))
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
            self._transport.close()
            self._transport = None
        self._parser = httptools.HttpResponseParser(self)

    async def send(self, request: bytes) -> str | None:
        if self._transport is None:
            try:
                await self._loop.create_connection(lambda: self, self.host, self.port)
            except OSError as exc:
                return f"UNAVAILABLE: cannot connect to {self.host}:{self.port}: {exc.strerror or exc}"
        waiter: asyncio.Future[str | None] = self._loop.create_future()
        self._waiter = waiter
        self._transport.write(request)  # type: ignore[union-attr]  # connected above
        return await waiter

    def close(self) -> None:
        self._close()


class HttpTransport:
    """Inference over HTTP/1.1 with pre-built requests; see the module docstring."""

    name = "http"

    def __init__(self, url: str, *, headers: dict[str, str] | None = None) -> None:
        self.host, self.port = split_host_port(url)
        self.headers = dict(headers or {})
        self._connections: list[_Connection] = []

    def prepare(self, request: InferRequestSpec) -> bytes:
        return build_request(request, self.host, self.port, self.headers)

    def sender(self, slot: int) -> Sender:
        """Slot i always uses connection i: steps run one after another, so they can share it."""
        while len(self._connections) <= slot:
            self._connections.append(_Connection(self.host, self.port))
        return self._connections[slot].send

    async def close(self) -> None:
        for connection in self._connections:
            connection.close()
        self._connections.clear()
