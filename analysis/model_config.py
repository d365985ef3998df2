"""What a stored Triton model config says about batching and instances, read once for the hints.

The config is stored as the server returned it: gRPC's JSON omits zero and false fields and
writes 64-bit integers as strings, HTTP's JSON writes them all; both read the same here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Batching:
    """The parts of a model's config that decide where queueing comes from."""

    max_batch_size: int
    """0: the model takes no batch dimension, so the server never batches its requests."""
    dynamic: bool
    """Dynamic batching is on (the server groups requests up to ``max_batch_size``)."""
    queue_delay_us: int = 0
    """``max_queue_delay_microseconds``: how long the batcher may hold a request to fill a batch."""
    instances: int | None = None
    """Model instances (the ``instance_group`` counts added up); None when the config says none."""
    sequence: bool = False
    """Sequence batching: requests are tied to their sequence's slot, not freely batched."""
    decoupled: bool = False
    """``model_transaction_policy { decoupled: true }``: the model answers from its own threads, so
    Triton's compute times cover only the call that starts each stream."""
    ensemble: bool = False
    """``platform: "ensemble"``: its time is spent in its composing models, which batch on their own."""


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def read_batching(config: Mapping[str, Any] | None) -> Batching | None:
    """The batching facts of a stored config; None when no config was stored (nothing to go on)."""
    if not config:
        return None
    groups = config.get("instance_group") or []
    counts = [_int(group.get("count", 1)) or 1 for group in groups if isinstance(group, Mapping)]
    dynamic = config.get("dynamic_batching")
    return Batching(
        max_batch_size=_int(config.get("max_batch_size", 0)),
        dynamic=isinstance(dynamic, Mapping),
        queue_delay_us=_int(dynamic.get("max_queue_delay_microseconds", 0))
        if isinstance(dynamic, Mapping)
        else 0,
        instances=sum(counts) if counts else None,
        sequence=isinstance(config.get("sequence_batching"), Mapping),
        decoupled=(config.get("model_transaction_policy") or {}).get("decoupled") is True,
        ensemble=config.get("platform") == "ensemble",
    )
