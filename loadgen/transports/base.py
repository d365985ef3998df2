"""The transport seam: the only thing the engine needs from a protocol.

A transport turns an :class:`InferRequestSpec` into a prepared request once
(serialized bytes, reused for every send) and hands out *senders*: coroutines
that send one prepared request and return ``None`` on success or a short error
reason. Returning the reason instead of raising keeps the hot path free of
exception objects; the engine, not the transport, records what happened.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

Sender = Callable[[Any], Awaitable[str | None]]
"""``await sender(prepared)`` -> None on success, else the error reason."""


Starter = Callable[[Any], "asyncio.Future[str | None] | None"]
"""``start(prepared)`` writes the request at once and returns the future its answer resolves (as a
:data:`Sender`'s result), or None when it cannot be written right now (not connected yet, past a
stream limit): the caller then awaits the slot's sender. The open loop writes a due send this way
the moment it decides it, not a loop turn later in a task of its own. Cancelling the future gives
the request up: the transport drops what is left of it before the slot's next request."""


def deadline_reason(timeout_s: float) -> str:
    """Every transport's reason for ``--request-timeout``, so that their counts compare."""
    return f"DEADLINE_EXCEEDED: no response within {timeout_s:g} s"


class Watchdog:
    """A transport's ``--request-timeout``: once a second, ``expire(limit, reason)`` fails every
    request sent before the loop time ``limit``. One task per transport rather than a timer per
    request keeps the hot path bare; a timeout of 0 starts nothing.

    Needed in practice: Triton 2.51's HTTP server stops answering some connections above a few
    hundred, and without a deadline such a slot would wait forever and its step never drain."""

    def __init__(self, timeout_s: float, expire: Callable[[float, str], None], name: str) -> None:
        self.timeout_s, self.expire, self.name = timeout_s, expire, name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start watching (from the running loop), unless already watching."""
        if self._task is None and self.timeout_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._watch(), name=self.name)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        reason = deadline_reason(self.timeout_s)
        while True:
            await asyncio.sleep(min(1.0, self.timeout_s / 2))
            self.expire(loop.time() - self.timeout_s, reason)


@dataclass(frozen=True)
class InputTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: bytes
    """Raw little-endian tensor bytes (BYTES tensors: 4-byte length-prefixed elements)."""
    shared_memory: tuple[str, int] | None = None
    """``--shared-memory system``: (region, offset) where ``data`` already lies in a registered
    system shared-memory region; the request then names it instead of carrying the bytes."""


NUMPY_DTYPES: dict[str, str] = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
"""Triton datatype -> little-endian numpy dtype of its raw bytes (BYTES and BF16 are special)."""


@dataclass(frozen=True)
class OutputTensor:
    """One output of a response, as the transport received it (checked by ``--validate``)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: bytes
    """Raw little-endian tensor bytes, as :attr:`InputTensor.data`."""

    def size_problem(self) -> str | None:
        """Why the bytes cannot be this datatype and shape (``--validate`` would compare arrays of
        another shape); None when they fit. BYTES are length-prefixed: any size."""
        numpy_type = "<u2" if self.datatype == "BF16" else NUMPY_DTYPES.get(self.datatype)
        if numpy_type is None:
            return None
        needed = math.prod(self.shape) * np.dtype(numpy_type).itemsize
        if len(self.data) == needed:
            return None
        shape = f"{self.datatype} {list(self.shape)}"
        return f"output {self.name!r} has {len(self.data)} bytes, {shape} needs {needed}"


StreamSender = Callable[[Any, "Arrivals"], Awaitable[str | None]]
"""``--streaming``: ``await sender(prepared, arrivals)`` appends the ``perf_counter_ns`` of each
response that carries outputs to ``arrivals`` (the slot's :class:`Arrivals`, reused), adds its
tokens, and returns as the final response arrives: None, or the error reason."""


class Arrivals(list[int]):
    """A slot's list of response arrival times (reused request after request), and the tokens
    those responses carried: one each, or with ``--token-output`` the named output's elements."""

    __slots__ = ("tokens",)

    def __init__(self) -> None:
        super().__init__()
        self.tokens = 0

    def clear(self) -> None:
        super().clear()
        self.tokens = 0


class CapturedArrivals(Arrivals):
    """``--streaming --validate``: also the outputs of each response with outputs, as the
    transport read them (``responses[i]`` goes with ``self[i]``)."""

    __slots__ = ("responses",)

    def __init__(self) -> None:
        super().__init__()
        self.responses: list[dict[str, OutputTensor]] = []

    def clear(self) -> None:
        super().clear()
        self.responses.clear()


CaptureSender = Callable[[Any], Awaitable[tuple[str | None, Any]]]
"""Like :data:`Sender`, but also returns the response for ``parse_outputs`` (validation only)."""


@dataclass(frozen=True)
class InferRequestSpec:
    """One inference request, protocol-neutral."""

    model: str
    inputs: tuple[InputTensor, ...]
    outputs: tuple[str, ...] = ()
    model_version: str = ""
    parameters: tuple[tuple[str, bool | int | str], ...] = ()
    """Request parameters (``--request-parameter``), in the order given."""
    output_memory: tuple[tuple[str, int, int], ...] = ()
    """``--output-shared-memory-size``: per output (as ``outputs``), the (region, offset, size)
    the server writes it to instead of into the response."""


SequenceId = int | str
"""A correlation id: uint64, or a string where the model's config asks for one."""


class SequenceRequests(Protocol):
    """A sequence model's request, built once (``Transport.prepare_sequence``): each send adds
    only its sequence id and start/end flags, as Triton's sequence extension takes them."""

    def request(self, sequence_id: SequenceId, start: bool, end: bool) -> Any:
        """The prepared request of one send, as the transport's senders take it."""
        ...


ID_WIDTH = 16
"""Bytes of the id each traced request carries (``--trace-rate``): requests are built with room
for exactly this many, so a send only puts its own in."""


class TaggedRequests(Protocol):
    """A request built once with room for an id (``Transport.prepare_tagged``): each send of a
    traced sweep puts in its own, which Triton's trace records as the request id."""

    def request(self, request_id: bytes) -> Any:
        """The prepared request of one send (``request_id``: :data:`ID_WIDTH` ASCII bytes)."""
        ...


class SplicedRequest:
    """Serialized bytes around a placeholder id: a send joins the two halves around its own id
    (one copy, no serialization)."""

    __slots__ = ("head", "tail")

    PLACEHOLDER = b"~" * ID_WIDTH

    def __init__(self, serialized: bytes) -> None:
        at = serialized.index(self.PLACEHOLDER)
        self.head, self.tail = serialized[:at], serialized[at + ID_WIDTH :]

    def request(self, request_id: bytes) -> bytes:
        return self.head + request_id + self.tail


class Transport(Protocol):
    name: str

    def prepare(self, request: InferRequestSpec) -> Any:
        """Serialize a request once; the result is passed to senders as-is."""
        ...

    def prepare_sequence(self, request: InferRequestSpec) -> SequenceRequests:
        """As :meth:`prepare`, for the requests of a sequence model."""
        ...

    def prepare_tagged(self, request: InferRequestSpec) -> TaggedRequests:
        """As :meth:`prepare`, each send with an id of its own (``--trace-rate``)."""
        ...

    def sender(self, slot: int) -> Sender:
        """The send coroutine for one in-flight slot (slots may map to separate connections)."""
        ...

    def capture_sender(self, slot: int) -> CaptureSender:
        """As :meth:`sender`, keeping the response: the slower path ``--validate`` takes."""
        ...

    def starter(self, slot: int) -> Starter | None:
        """Slot ``slot``'s :data:`Starter`, sharing its sender's connection; None where the
        transport has none (every send then awaits the sender)."""
        ...

    def parse_outputs(self, response: Any) -> dict[str, OutputTensor]:
        """The outputs of a response returned by a capture sender."""
        ...

    async def close(self) -> None: ...
