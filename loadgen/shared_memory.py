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
from collections.abc import AsyncIterator, Sequence
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


@contextlib.asynccontextmanager
async def shared_inputs(
    api: ServerAPI, requests: Sequence[InferRequestSpec]
) -> AsyncIterator[list[InferRequestSpec]]:
    """The requests reading their inputs from a registered system shared-memory region, for as
    long as the context lasts (see the module docstring)."""
    region = f"{REGION_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    placed, contents = place_inputs(requests, region)
    if not contents:
        raise ConfigError("--shared-memory system: the requests have no input bytes to place")
    try:
        memory = SharedMemory(name=region, create=True, size=len(contents))
    except OSError as exc:
        raise ConfigError(
            f"--shared-memory system: cannot create {region} in /dev/shm: {exc.strerror}"
        ) from None
    try:
        assert memory.buf is not None
        memory.buf[: len(contents)] = contents
        await api.register_system_memory(region, f"/{region}", len(contents))
        try:
            yield placed
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
