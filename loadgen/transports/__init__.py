"""Protocols that carry inference requests (one seam: :class:`Transport`)."""

from loadgen.config import GRPC_CLIENTS, REQUEST_TIMEOUT_S
from loadgen.tls import TlsSettings
from loadgen.transports.base import InferRequestSpec, InputTensor, Sender, Transport
from loadgen.transports.grpc import GrpcTransport
from loadgen.transports.grpc_h2 import GrpcH2Transport
from loadgen.transports.http import HttpTransport
from loadgen.transports.http_stream import HttpStreamTransport


def make_transport(
    protocol: str,
    url: str,
    headers: dict[str, str] | None = None,
    tls: TlsSettings | None = None,
    *,
    grpc_implementation: str = "h2",
    request_timeout_s: float = REQUEST_TIMEOUT_S,
    streaming: bool = False,
    token_output: str = "",
    max_connections: int | None = None,
) -> Transport:
    """The transport for ``protocol``; ``tls`` (or an ``https://`` URL) makes it connect over TLS.

    ``grpc_implementation`` picks a gRPC client (:data:`~loadgen.config.GRPC_CLIENTS`): ``h2`` (the
    default) a minimal HTTP/2 client (:class:`GrpcH2Transport`, several times less client CPU per
    call: benchmarks/grpc_transports.py), ``aio`` raw grpc.aio (:class:`GrpcTransport`, gRPC's own
    C-core: the reference the other is tested against).
    A request unanswered for ``request_timeout_s`` fails with DEADLINE_EXCEEDED (0: never).
    ``streaming``: stream transports; ``token_output`` counts a response's tokens in that output.
    ``max_connections``: gRPC's in-flight requests share this many connections."""
    timeout = request_timeout_s
    tokens = token_output
    if streaming and protocol == "http":  # Triton's generate_stream: server-sent events
        return HttpStreamTransport(
            url, headers=headers, tls=tls, request_timeout_s=timeout, token_output=tokens
        )
    if streaming and grpc_implementation == "aio":
        return GrpcTransport(
            url,
            headers=headers,
            tls=tls,
            request_timeout_s=timeout,
            streaming=True,
            token_output=tokens,
            max_connections=max_connections,
        )
    if streaming:
        ssl = tls.ssl_context() if tls is not None else None
        return GrpcH2Transport(
            url,
            headers=headers,
            ssl=ssl,
            request_timeout_s=timeout,
            streaming=True,
            token_output=tokens,
            max_connections=max_connections,
        )
    if protocol == "http":
        return HttpTransport(url, headers=headers, tls=tls, request_timeout_s=timeout)
    if grpc_implementation == "h2":
        ssl = tls.ssl_context() if tls is not None else None
        return GrpcH2Transport(
            url, headers=headers, ssl=ssl, request_timeout_s=timeout, max_connections=max_connections
        )
    if grpc_implementation != "aio":
        raise ValueError(f"unknown gRPC implementation {grpc_implementation!r}: {', '.join(GRPC_CLIENTS)}")
    return GrpcTransport(
        url, headers=headers, tls=tls, request_timeout_s=timeout, max_connections=max_connections
    )


__all__ = [
    "GrpcH2Transport",
    "GrpcTransport",
    "HttpTransport",
    "InferRequestSpec",
    "InputTensor",
    "Sender",
    "Transport",
    "make_transport",
]
