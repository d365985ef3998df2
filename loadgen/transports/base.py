"""The transport seam: the only thing the engine needs from a protocol.

A transport turns an :class:`InferRequestSpec` into a prepared request once
(serialized bytes, reused for every send) and hands out *senders*: coroutines
that send one prepared request and return ``None`` on success or a short error
reason. Returning the reason instead of raising keeps the hot path free of
exception objects; the engine, not the transport, records what happened.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

Sender = Callable[[Any], Awaitable[str | None]]
"""``await sender(prepared)`` -> None on success, else the error reason."""


@dataclass(frozen=True)
class InputTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: bytes
    """Raw little-endian tensor bytes (BYTES tensors: 4-byte length-prefixed elements)."""


@dataclass(frozen=True)
class InferRequestSpec:
    """One inference request, protocol-neutral."""

    model: str
    inputs: tuple[InputTensor, ...]
    outputs: tuple[str, ...] = ()
    model_version: str = ""


class Transport(Protocol):
    name: str

    def prepare(self, request: InferRequestSpec) -> Any:
        """Serialize a request once; the result is passed to senders as-is."""
        ...

    def sender(self, slot: int) -> Sender:
        """The send coroutine for one in-flight slot (slots may map to separate connections)."""
        ...

    async def close(self) -> None: ...
