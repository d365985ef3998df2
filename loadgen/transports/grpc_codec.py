"""The protobuf side of Triton's gRPC ModelInfer, shared by both gRPC clients (grpc.aio and h2).

A ModelInferRequest is serialized once per :class:`InferRequestSpec` and a ModelInferResponse is
only parsed for ``--validate``; both clients shorten error reasons the same way, so their results
compare, and spread their in-flight slots over connections the same way.
"""

from __future__ import annotations

import grpc
from google.protobuf.message import DecodeError
from tritonclient.grpc import service_pb2

from loadgen.transports.base import InferRequestSpec, OutputTensor
from loadgen.transports.reasons import status_reason

SLOTS_PER_CHANNEL = 64
"""In-flight slots per channel (grpc.aio) or connection (h2) before the next slot opens another."""


def error_reason(error: grpc.aio.AioRpcError) -> str:
    """A stable, short reason: status code and the server's message (:mod:`.reasons`)."""
    return status_reason(error.code().name, error.details() or "")


def build_request(spec: InferRequestSpec) -> bytes:
    request = service_pb2.ModelInferRequest(model_name=spec.model, model_version=spec.model_version)
    for tensor in spec.inputs:
        entry = request.inputs.add()
        entry.name = tensor.name
        entry.datatype = tensor.datatype
        entry.shape.extend(tensor.shape)
        request.raw_input_contents.append(tensor.data)
    for name in spec.outputs:
        request.outputs.add().name = name
    data: bytes = request.SerializeToString()
    return data


def parse_response(data: bytes) -> dict[str, OutputTensor]:
    """The outputs of a serialized ModelInferResponse (Triton sends them as raw contents)."""
    response = service_pb2.ModelInferResponse.FromString(data)
    raw = response.raw_output_contents
    return {
        out.name: OutputTensor(out.name, out.datatype, tuple(out.shape), raw[i] if i < len(raw) else b"")
        for i, out in enumerate(response.outputs)
    }


def read_outputs(data: bytes) -> tuple[str | None, dict[str, OutputTensor]]:
    """``--validate``: the outputs of an answer, or an INTERNAL reason when its message is no
    ModelInferResponse or its bytes do not fit their shapes (the call fails, the slot goes on)."""
    try:
        outputs = parse_response(data)
    except DecodeError as exc:
        return status_reason("INTERNAL", f"the answer is no inference response: {exc}"), {}
    for output in outputs.values():
        if (problem := output.size_problem()) is not None:
            return status_reason("INTERNAL", problem), {}
    return None, outputs
