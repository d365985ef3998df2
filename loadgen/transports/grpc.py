"""gRPC transport: raw ``grpc.aio`` calls with pre-serialized ModelInferRequest bytes.

tritonclient's aio client builds and parses protobuf messages for every call;
here the request is serialized once and the response is left as bytes, so a send
costs one C-core call. In-flight slots are spread over several channels (TCP
connections) so that one connection does not cap high concurrency. With TLS each
channel is a ``secure_channel`` with credentials read once (:mod:`loadgen.tls`).

grpc.aio reports a lost connection as UNAVAILABLE, as the server's own UNAVAILABLE: the channel's
state tells them apart (READY: the server answered), so that the reasons read as the h2 client's.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

from loadgen.config import REQUEST_TIMEOUT_S
from loadgen.tls import TlsSettings
from loadgen.transports.addresses import grpc_target
from loadgen.transports.base import (
    Arrivals,
    CapturedArrivals,
    CaptureSender,
    InferRequestSpec,
    OutputTensor,
    Sender,
    SequenceRequests,
    StreamSender,
    TaggedRequests,
    deadline_reason,
)
from loadgen.transports.grpc_codec import (
    SLOTS_PER_CHANNEL,
    MessageSequence,
    TaggedMessage,
    build_request,
    channel_index,
    error_reason,
    read_outputs,
    read_stream_response,
    stream_outputs,
)
from loadgen.transports.reasons import connection_lost, connection_reason

_METHOD = "/inference.GRPCInferenceService/ModelInfer"
_STREAM_METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    # a private subchannel per channel, so that channels really are separate connections
    ("grpc.use_local_subchannel_pool", 1),
]


def rpc_reason(error: grpc.aio.AioRpcError, channel: grpc.aio.Channel, peer: str) -> str:
    """The reason of a failed call; UNAVAILABLE on a channel that is not READY is the connection's."""
    if error.code() is not grpc.StatusCode.UNAVAILABLE:
        return error_reason(error)
    if channel.get_state() is grpc.ChannelConnectivity.READY:
        return error_reason(error)
    details = error.details() or ""
    if "failed to connect" in details.lower():
        cause = details.rsplit(": ", 1)[-1] if ": " in details else details
        return connection_reason(f"cannot connect to {peer}: {cause}")
    return connection_lost(peer, details)


class GrpcTransport:
    """Raw gRPC inference calls; see the module docstring."""

    name = "grpc"

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        slots_per_channel: int = SLOTS_PER_CHANNEL,
        max_connections: int | None = None,
        tls: TlsSettings | None = None,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        streaming: bool = False,
        token_output: str = "",
    ) -> None:
        self.url = url
        self.streaming = streaming
        self.token_output = token_output
        self._timeout = request_timeout_s if request_timeout_s > 0 else None
        """gRPC's own per-call deadline (DEADLINE_EXCEEDED when it passes)."""
        # read once: every channel makes its own TLS connection with the same credentials
        self._credentials = tls.grpc_credentials() if tls is not None else None
        # gRPC metadata keys are lower-case; built once and passed by reference on every call
        self._metadata = tuple((k.lower(), v) for k, v in (headers or {}).items()) or None
        self._slots_per_channel = slots_per_channel
        self._max_connections = max_connections
        self._channels: list[grpc.aio.Channel] = []
        self._calls: list[Any] = []

    def prepare(self, request: InferRequestSpec) -> bytes:
        return build_request(request, stream=self.streaming)

    def prepare_sequence(self, request: InferRequestSpec) -> SequenceRequests:
        return MessageSequence(build_request(request))

    def prepare_tagged(self, request: InferRequestSpec) -> TaggedRequests:
        return TaggedMessage(build_request(request, stream=self.streaming))

    def _call(self, index: int) -> tuple[Any, grpc.aio.Channel]:
        target = grpc_target(self.url)
        while len(self._calls) <= index:
            channel = (
                grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
                if self._credentials is None
                else grpc.aio.secure_channel(target, self._credentials, options=_CHANNEL_OPTIONS)
            )
            self._channels.append(channel)
            self._calls.append(channel.unary_unary(_METHOD))
        return self._calls[index], self._channels[index]

    def sender(self, slot: int) -> Sender:
        call, channel = self._call(channel_index(slot, self._slots_per_channel, self._max_connections))
        rpc_error = grpc.aio.AioRpcError
        metadata, timeout, peer = self._metadata, self._timeout, self.url

        async def send(request: bytes) -> str | None:
            try:
                await call(request, metadata=metadata, timeout=timeout)
            except rpc_error as exc:
                return rpc_reason(exc, channel, peer)
            return None

        return send

    def stream_sender(self, slot: int) -> StreamSender:
        """A slot's requests over one ModelStreamInfer stream, one request at a time: each
        response with outputs is time-stamped into ``arrivals`` until the final one. A broken
        stream is reopened on the slot's next send."""
        _, channel = self._call(channel_index(slot, self._slots_per_channel, self._max_connections))
        open_stream = channel.stream_stream(_STREAM_METHOD)
        metadata, peer, clock = self._metadata, self.url, time.perf_counter_ns
        token_output, silence = self.token_output, self._timeout
        calls: list[Any] = [None]

        async def send(request: bytes, arrivals: Arrivals) -> str | None:
            call = calls[0]
            if call is None:
                call = calls[0] = open_stream(metadata=metadata)
            try:
                await call.write(request)
                while True:
                    try:  # --request-timeout bounds the silence, not the stream's length
                        message = await asyncio.wait_for(call.read(), silence)
                    except TimeoutError:
                        call.cancel()
                        calls[0] = None
                        return deadline_reason(silence or 0.0)
                    at = clock()
                    if message is grpc.aio.EOF:
                        calls[0] = None
                        return connection_lost(peer, "the server ended the stream")
                    reason, tokens, final = read_stream_response(message, token_output)
                    if tokens >= 0:  # a response with outputs
                        arrivals.append(at)
                        arrivals.tokens += tokens
                        if isinstance(arrivals, CapturedArrivals):
                            arrivals.responses.append(stream_outputs(message))
                    if reason is not None or final:
                        return reason
            except grpc.aio.AioRpcError as exc:
                calls[0] = None
                return rpc_reason(exc, channel, peer)
            except asyncio.CancelledError:  # the stream is mid-request: the next one opens anew
                call.cancel()
                calls[0] = None
                raise

        return send

    def starter(self, slot: int) -> None:
        """None: a grpc.aio call is a coroutine, so every send awaits its :meth:`sender`."""
        return None

    def capture_sender(self, slot: int) -> CaptureSender:
        call, channel = self._call(channel_index(slot, self._slots_per_channel, self._max_connections))
        metadata, timeout, peer = self._metadata, self._timeout, self.url

        async def send(request: bytes) -> tuple[str | None, dict[str, OutputTensor]]:
            try:
                answer = await call(request, metadata=metadata, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                return rpc_reason(exc, channel, peer), {}
            return read_outputs(answer)

        return send

    def parse_outputs(self, response: dict[str, OutputTensor]) -> dict[str, OutputTensor]:
        """The outputs the capture sender has read already (:func:`read_outputs`)."""
        return response

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
        self._channels.clear()
        self._calls.clear()
