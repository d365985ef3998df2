"""Protocols that carry inference requests (one seam: :class:`Transport`)."""

from loadgen.transports.base import InferRequestSpec, InputTensor, Sender, Transport
from loadgen.transports.grpc import GrpcTransport
from loadgen.transports.http import HttpTransport


def make_transport(protocol: str, url: str, headers: dict[str, str] | None = None) -> Transport:
    if protocol == "http":
        return HttpTransport(url, headers=headers)
    return GrpcTransport(url, headers=headers)


__all__ = [
    "GrpcTransport",
    "HttpTransport",
    "InferRequestSpec",
    "InputTensor",
    "Sender",
    "Transport",
    "make_transport",
]
