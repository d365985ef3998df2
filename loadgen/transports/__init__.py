"""Protocols that carry inference requests (one seam: :class:`Transport`)."""

from loadgen.transports.base import InferRequestSpec, InputTensor, Sender, Transport
from loadgen.transports.grpc import GrpcTransport

__all__ = ["GrpcTransport", "InferRequestSpec", "InputTensor", "Sender", "Transport"]
