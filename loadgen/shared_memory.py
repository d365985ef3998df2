"""``--shared-memory system``: the requests' inputs placed once in a POSIX shared-memory region
that Triton maps, so a request carries only where its bytes are (region, offset, size), not the
bytes: the copy through the socket that large inputs (images, audio) cost is gone.

The region holds every distinct input tensor of the requests once, 64-byte aligned. Inputs are
only read (by the server), so every in-flight request may point into it at once; nothing the
server writes lands there. It is registered through Triton's shared-memory API (the sweep's
protocol) before the run is recorded, and unregistered and unlinked when the sweep ends,
fails or is interrupted (Ctrl-C); a loadgen killed outright leaves it to Python's resource
tracker, which unlinks it when the process is gone. A server that refuses it (another host,
no access to /dev/shm) is one line before the run starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from multiprocessing.shared_memory import SharedMemory

from loadgen.errors import ConfigError, ServerUnavailable
from loadgen.scrape.server_api import ServerAPI
from loadgen.transports.base import InferRequestSpec

log = logging.getLogger(__name__)

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


MAX_OUTPUT_REGION = 1 << 30
"""The most memory ``--output-shared-memory-size`` may take (slots x outputs x size)."""


@contextlib.asynccontextmanager
async def shared_outputs(
    api: ServerAPI, requests: Sequence[InferRequestSpec], slots: int, size: int
) -> AsyncIterator[Callable[[int], list[InferRequestSpec]]]:
    """``--output-shared-memory-size``: one registered region of ``slots`` disjoint slices, each
    ``size`` bytes per output, so that no two requests in flight ever share an output buffer;
    yields, for a slot, the requests writing their outputs into its slice."""
    outputs = max((len(spec.outputs) for spec in requests), default=0)
    per_slot = outputs * _aligned(size)
    total = slots * per_slot
    if not outputs:
        raise ConfigError("--output-shared-memory-size: the requests ask for no output")
    if total > MAX_OUTPUT_REGION:
        raise ConfigError(
            f"--output-shared-memory-size {size} x {outputs} output(s) x {slots} slots is {total} bytes, "
            f"over {MAX_OUTPUT_REGION >> 20} MiB: give a smaller size or a lower concurrency"
        )
    region = _new_region()
    async with _region(api, region, total, "output"):

        def slot_requests(slot: int) -> list[InferRequestSpec]:
            base = slot * per_slot
            return [
                replace(
                    spec,
                    output_memory=tuple(
                        (region, base + i * _aligned(size), size) for i in range(len(spec.outputs))
                    ),
                )
                for spec in requests
            ]

        yield slot_requests


@contextlib.asynccontextmanager
async def _region(
    api: ServerAPI, region: str, size: int, what: str, contents: bytes = b""
) -> AsyncIterator[None]:
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
            yield
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
