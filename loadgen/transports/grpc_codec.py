"""The protobuf side of Triton's gRPC ModelInfer, shared by both gRPC clients (grpc.aio and h2).

A ModelInferRequest is serialized once per :class:`InferRequestSpec` and a ModelInferResponse is
only parsed for ``--validate``; both clients shorten error reasons the same way, so their results
compare, and spread their in-flight slots over connections the same way.
"""

from __future__ import annotations

import math

import grpc
from google.protobuf.message import DecodeError
from tritonclient.grpc import service_pb2

from loadgen.transports.base import InferRequestSpec, OutputTensor
from loadgen.transports.reasons import status_reason

SLOTS_PER_CHANNEL = 64
"""In-flight slots per channel (grpc.aio) or connection (h2) before the next slot opens another."""


def channel_index(slot: int, slots_per_channel: int, max_connections: int | None) -> int:
    """The connection a slot sends on: ``slots_per_channel`` slots each, or, with
    ``--max-connections``, the slots dealt round-robin over that many (each then carries as many
    concurrent streams as the server allows, and queues the rest)."""
    return slot % max_connections if max_connections else slot // slots_per_channel


def error_reason(error: grpc.aio.AioRpcError) -> str:
    """A stable, short reason: status code and the server's message (:mod:`.reasons`)."""
    return status_reason(error.code().name, error.details() or "")


FINAL_FLAG = "triton_final_response"
"""The response parameter that ends a request's stream (true on its last response)."""
EMPTY_FINAL = "triton_enable_empty_final_response"
"""Asks Triton for an empty final response when the last one came without the flag, as
perf_analyzer does: without it a stream of zero responses would never end for the client."""


def build_request(spec: InferRequestSpec, *, stream: bool = False) -> bytes:
    request = service_pb2.ModelInferRequest(model_name=spec.model, model_version=spec.model_version)
    if stream:
        request.parameters[EMPTY_FINAL].bool_param = True
    for name, value in spec.parameters:
        if isinstance(value, bool):
            request.parameters[name].bool_param = value
        elif isinstance(value, int):
            request.parameters[name].int64_param = value  # what Triton takes for priority and timeout
        else:
            request.parameters[name].string_param = value
    for tensor in spec.inputs:
        entry = request.inputs.add()
        entry.name = tensor.name
        entry.datatype = tensor.datatype
        entry.shape.extend(tensor.shape)
        if tensor.shared_memory is None:
            request.raw_input_contents.append(tensor.data)
            continue
        region, offset = tensor.shared_memory
        entry.parameters["shared_memory_region"].string_param = region
        entry.parameters["shared_memory_offset"].int64_param = offset
        entry.parameters["shared_memory_byte_size"].int64_param = len(tensor.data)
    for i, name in enumerate(spec.outputs):
        output = request.outputs.add()
        output.name = name
        if spec.output_memory:
            region, offset, size = spec.output_memory[i]
            output.parameters["shared_memory_region"].string_param = region
            output.parameters["shared_memory_offset"].int64_param = offset
            output.parameters["shared_memory_byte_size"].int64_param = size
    data: bytes = request.SerializeToString()
    return data


def sequence_parameters(sequence_id: int | str, start: bool, end: bool) -> bytes:
    """A sequence request's own parameters as a serialized ModelInferRequest holding only them:
    appended to a request built once, protobuf merges the two (map entries add up), so the
    inputs are never serialized again. An id above int64 goes as uint64 (Triton takes both)."""
    request = service_pb2.ModelInferRequest()
    parameters = request.parameters
    if isinstance(sequence_id, str):
        parameters["sequence_id"].string_param = sequence_id
    elif sequence_id < 2**63:
        parameters["sequence_id"].int64_param = sequence_id
    else:
        parameters["sequence_id"].uint64_param = sequence_id
    parameters["sequence_start"].bool_param = start
    parameters["sequence_end"].bool_param = end
    data: bytes = request.SerializeToString()
    return data


def parse_response(data: bytes) -> dict[str, OutputTensor]:
    """The outputs of a serialized ModelInferResponse (Triton sends them as raw contents)."""
    return _outputs(service_pb2.ModelInferResponse.FromString(data))


def _outputs(response: service_pb2.ModelInferResponse) -> dict[str, OutputTensor]:
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


def stream_outputs(data: bytes) -> dict[str, OutputTensor]:
    """``--validate``: the outputs of one ModelStreamInferResponse (a response with outputs)."""
    return _outputs(service_pb2.ModelStreamInferResponse.FromString(data).infer_response)


def read_stream_response(data: bytes, token_output: str = "") -> tuple[str | None, int, bool]:
    """One ModelStreamInferResponse: (the error reason if the server sent one, the tokens it carries,
    whether it is the request's final response). A response without outputs carries no token (-1:
    Triton's empty final response); one with outputs 1, or with ``token_output`` the number of
    elements of that output. An error ends its request."""
    try:
        message = service_pb2.ModelStreamInferResponse.FromString(data)
    except DecodeError as exc:
        return status_reason("INTERNAL", f"the stream message is no inference response: {exc}"), -1, True
    if message.error_message:
        return status_reason("INTERNAL", message.error_message), -1, True
    response = message.infer_response
    final = response.parameters[FINAL_FLAG].bool_param if FINAL_FLAG in response.parameters else True
    if not response.outputs:
        return None, -1, final
    if not token_output:
        return None, 1, final
    shape = next((out.shape for out in response.outputs if out.name == token_output), None)
    return None, math.prod(shape) if shape is not None else 0, final


class TaggedMessage:
    """A ModelInferRequest serialized once; a send appends its ``id`` (field 3): protobuf takes a
    field in any position, so the rest is never serialized again."""

    __slots__ = ("message",)

    def __init__(self, message: bytes) -> None:
        self.message = message

    def request(self, request_id: bytes) -> bytes:
        return self.message + b"\x1a" + bytes((len(request_id),)) + request_id


class MessageSequence:
    """A sequence model's ModelInferRequest: serialized once, each send's id and flags appended
    (:func:`sequence_parameters`)."""

    __slots__ = ("message",)

    def __init__(self, message: bytes) -> None:
        self.message = message

    def request(self, sequence_id: int | str, start: bool, end: bool) -> bytes:
        return self.message + sequence_parameters(sequence_id, start, end)
