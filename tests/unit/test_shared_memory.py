"""Shared-memory placement: inputs once each, aligned; each slot's outputs read back as written."""

from __future__ import annotations

from collections.abc import Iterator
from multiprocessing.shared_memory import SharedMemory

import pytest
from tritonclient.grpc import service_pb2

from loadgen.shared_memory import SlotOutputs, place_inputs
from loadgen.transports.base import InferRequestSpec, InputTensor, OutputTensor
from loadgen.transports.grpc_codec import build_request


def _spec(*datas: bytes) -> InferRequestSpec:
    inputs = tuple(InputTensor(f"IN{i}", "UINT8", (len(d),), d) for i, d in enumerate(datas))
    return InferRequestSpec("m", inputs, outputs=("OUT", "TEXT"))


def test_each_distinct_input_is_placed_once_64_byte_aligned() -> None:
    specs = [_spec(b"a" * 10, b"b" * 70), _spec(b"a" * 10, b"c")]
    placed, contents = place_inputs(specs, "r")
    offsets = [[t.shared_memory for t in spec.inputs] for spec in placed]
    assert offsets == [[("r", 0), ("r", 64)], [("r", 0), ("r", 192)]]  # the shared 10 bytes once
    assert len(contents) == 256 and contents[64:134] == b"b" * 70 and contents[192:193] == b"c"
    message = service_pb2.ModelInferRequest.FromString(build_request(placed[0]))
    assert list(message.raw_input_contents) == []  # no input bytes travel
    assert message.inputs[1].parameters["shared_memory_offset"].int64_param == 64
    assert message.inputs[1].parameters["shared_memory_byte_size"].int64_param == 70


@pytest.fixture
def memories() -> Iterator[list[SharedMemory]]:
    made = [SharedMemory(create=True, size=256) for _ in range(2)]
    yield made
    for memory in made:
        memory.close()
        memory.unlink()


def test_each_slot_writes_to_its_own_region_and_answers_read_back(memories: list[SharedMemory]) -> None:
    slots = SlotOutputs([_spec(b"x")], memories, size=40)
    first, second = slots.requests(0)[0], slots.requests(1)[0]
    assert first.output_memory == ((memories[0].name, 0, 40), (memories[0].name, 64, 40))
    assert second.output_memory[0][0] == memories[1].name
    text = b"".join(len(w).to_bytes(4, "little") + w for w in (b"ab", b"cde"))
    assert memories[1].buf is not None
    memories[1].buf[0:8] = b"\x01\x02\x03\x04\x05\x06\x07\x08"
    memories[1].buf[64 : 64 + len(text)] = text
    reference = {
        "OUT": OutputTensor("OUT", "UINT8", (8,), bytes(8)),
        "TEXT": OutputTensor("TEXT", "BYTES", (2,), b"\x00" * 13),
    }
    read = slots.read(1, 0, reference)
    assert read["OUT"].data == b"\x01\x02\x03\x04\x05\x06\x07\x08"  # the reference's size of it
    assert read["TEXT"].data == text  # as many length-prefixed elements as the reference's shape
