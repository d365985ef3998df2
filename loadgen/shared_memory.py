"""``--shared-memory system``: the requests' inputs placed once in a POSIX shared-memory region
that Triton maps, so a request carries only where its bytes are (region, offset, size), not the
bytes: the copy through the socket that large inputs (images, audio) cost is gone.

The input region holds every distinct input tensor of the requests once, 64-byte aligned.
Inputs are only read (by the server), so every in-flight request may point into it at once.
Outputs (``--output-shared-memory-size``) are written, so each in-flight slot has a region of
its own. Each region is registered through Triton's shared-memory API (the sweep's
protocol) before the run is recorded, and unregistered and unlinked when the sweep ends,
fails or is interrupted (Ctrl-C); a loadgen killed outright leaves it to Python's resource
tracker, which unlinks it when the process is gone. A server that refuses it (another host,
no access to /dev/shm) is one line before the run starts.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from multiprocessing.shared_memory import SharedMemory

from loadgen.errors import ConfigError, ServerUnavailable
from loadgen.scrape.server_api import ServerAPI
from loadgen.transports.base import InferRequestSpec, OutputTensor

REGION_PREFIX = "loadgen-"
"""Every region loadgen creates is named ``loadgen-<pid>-<random>``: in /dev/shm and in the
server's list alike."""
ALIGN = 64


def _aligned(size: int) -> int:
    return -(-size // ALIGN) * ALIGN


def place_inputs(requests: Sequence[InferRequestSpec], region: str) -> tuple[list[InferRequestSpec], bytes]:
    """The requests with each input pointing into ``region``, and the region's contents (each
    distinct tensor once)."""
    offsets: dict[bytes, int] = {}
    size = 0
    for spec in requests:
        for tensor in spec.inputs:
            if tensor.data not in offsets:
                offsets[tensor.data] = size
                size += _aligned(len(tensor.data))
    contents = bytearray(size)
    for data, offset in offsets.items():
        contents[offset : offset + len(data)] = data
    placed = [
        replace(spec, inputs=tuple(replace(t, shared_memory=(region, offsets[t.data])) for t in spec.inputs))
        for spec in requests
    ]
    return placed, bytes(contents)


def _new_region() -> str:
    return f"{REGION_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"


@contextlib.asynccontextmanager
async def shared_inputs(
    api: ServerAPI, requests: Sequence[InferRequestSpec]
) -> AsyncIterator[list[InferRequestSpec]]:
    """The requests reading their inputs from a registered system shared-memory region, for as
    long as the context lasts (see the module docstring)."""
    region = _new_region()
    placed, contents = place_inputs(requests, region)
    if not contents:
        raise ConfigError("--shared-memory system: the requests have no input bytes to place")
    async with _region(api, region, len(contents), "input", contents):
        yield placed


MAX_OUTPUT_MEMORY = 1 << 30
"""The most memory ``--output-shared-memory-size`` may take (slots x outputs x size)."""


class SlotOutputs:
    """``--output-shared-memory-size``: each in-flight slot's region, the requests that write their
    outputs there, and (``--validate``) reading an answer back from it."""

    def __init__(
        self, requests: Sequence[InferRequestSpec], memories: Sequence[SharedMemory], size: int
    ) -> None:
        self._requests = list(requests)
        self._memories = list(memories)
        self._stride = _aligned(size)
        self._size = size
        self.slots = len(self._memories)

    def requests(self, slot: int) -> list[InferRequestSpec]:
        """The requests writing their outputs into ``slot``'s region (one place per output)."""
        region = self._memories[slot].name
        return [
            replace(
                spec,
                output_memory=tuple((region, i * self._stride, self._size) for i in range(len(spec.outputs))),
            )
            for spec in self._requests
        ]

    def read(self, slot: int, key: int, reference: Mapping[str, OutputTensor]) -> dict[str, OutputTensor]:
        """The answer to request ``key`` as the server wrote it into ``slot``'s region, read with
        the reference's datatype and shape (a wrong answer then differs from it, as it must)."""
        buffer = self._memories[slot].buf
        assert buffer is not None
        outputs = {}
        for i, name in enumerate(self._requests[key].outputs):
            expected = reference.get(name)
            if expected is None:
                continue
            place = bytes(buffer[i * self._stride : i * self._stride + self._size])
            size = (
                _bytes_size(place, math.prod(expected.shape))
                if expected.datatype == "BYTES"
                else len(expected.data)
            )
            outputs[name] = OutputTensor(name, expected.datatype, expected.shape, place[:size])
        return outputs


def _bytes_size(place: bytes, elements: int) -> int:
    """The bytes ``elements`` length-prefixed BYTES elements take at the start of ``place``."""
    offset = 0
    for _ in range(elements):
        if offset + 4 > len(place):
            break
        offset += 4 + int.from_bytes(place[offset : offset + 4], "little")
    return min(offset, len(place))


@contextlib.asynccontextmanager
async def shared_outputs(
    api: ServerAPI, requests: Sequence[InferRequestSpec], slots: int, size: int
) -> AsyncIterator[SlotOutputs]:
    """``--output-shared-memory-size``: one registered region per in-flight slot, ``size`` bytes per
    output, so that no two requests in flight ever share an output buffer."""
    outputs = max((len(spec.outputs) for spec in requests), default=0)
    per_slot = outputs * _aligned(size)
    if not outputs:
        raise ConfigError("--output-shared-memory-size: the requests ask for no output")
    if slots * per_slot > MAX_OUTPUT_MEMORY:
        raise ConfigError(
            f"--output-shared-memory-size {size} x {outputs} output(s) x {slots} slots is "
            f"{slots * per_slot} bytes, over {MAX_OUTPUT_MEMORY >> 20} MiB: give a smaller size or a "
            "lower concurrency"
        )
    async with contextlib.AsyncExitStack() as held:
        memories = [
            await held.enter_async_context(_region(api, _new_region(), per_slot, "output"))
            for _ in range(slots)
        ]
        yield SlotOutputs(requests, memories, size)


@contextlib.asynccontextmanager
async def _region(
    api: ServerAPI, region: str, size: int, what: str, contents: bytes = b""
) -> AsyncIterator[SharedMemory]:
    """A POSIX region of ``size`` bytes (starting with ``contents``), registered with the server
    for as long as the context lasts; unregistered and unlinked however it ends."""
    try:
        memory = SharedMemory(name=region, create=True, size=size)
    except OSError as exc:
        raise ConfigError(
            f"--shared-memory: cannot create the {what} region in /dev/shm: {exc.strerror}"
        ) from None
    try:
        assert memory.buf is not None
        memory.buf[: len(contents)] = contents
        await api.register_system_memory(region, f"/{region}", size)
        try:
            yield memory
        finally:
            with contextlib.suppress(ServerUnavailable, ConfigError, OSError):  # a server gone keeps nothing
                await api.unregister_system_memory(region)
    finally:
        memory.close()
        memory.unlink()


def leftover_regions() -> list[str]:
    """loadgen's regions in /dev/shm (none once every sweep has ended, however it ended)."""
    with contextlib.suppress(OSError):
        return sorted(name for name in os.listdir("/dev/shm") if name.startswith(REGION_PREFIX))
    return []
