"""What to do about the dominant part of a step's latency: the hint reads the model's config and
the batches the server executed, because the same queueing has a different cure when batches are
full than when they are not."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any

from analysis.model_config import Batching

FULL_BATCH = 0.9
"""Executed batches averaging this share of ``max_batch_size`` or more count as full."""

HINTS = {
    "client": "client-side time dominates: the client or network is the bottleneck",
    "queue": "queue dominates: requests wait for a free instance or for the batcher: add instances, "
    "or enable dynamic batching if the model does not batch yet",
    "compute_input": "compute input dominates: copying inputs into the model is the bottleneck",
    "compute_infer": "compute infer dominates: the model itself is the bottleneck",
    "compute_output": "compute output dominates: copying outputs out of the model is the bottleneck",
}
"""What each dominant part suggests when the model's config is not known (see :func:`hint`)."""


def _known(value: Any) -> bool:
    return value is not None and not math.isnan(value)


def avg_batch(row: Mapping[Hashable, Any]) -> float | None:
    """The server's mean executed batch size in the step (inferences per execution)."""
    inferences, executions = row.get("server_inference_count"), row.get("server_execution_count")
    if inferences is None or executions is None or not (_known(inferences) and _known(executions)):
        return None
    return float(inferences) / float(executions) if executions > 0 else None


def _instances(batching: Batching) -> str:
    return f" (now {batching.instances})" if batching.instances else ""


def hint(component: str, batching: Batching | None, avg_batch: float | None) -> str:
    """What the dominant part suggests, given the model's batching config and the batches the
    server executed: the queue has a different cure when batches are full than when they are not."""
    if batching is not None and batching.ensemble and component != "client":
        dominates = HINTS[component].split(":")[0]
        return f"{dominates}: an ensemble's time is its composing models': see which one in their breakdown"
    if batching is None or component not in ("queue", "compute_infer"):
        return HINTS[component]
    size, more = batching.max_batch_size, f"add instances{_instances(batching)}"
    if component == "compute_infer":
        if size > 0 and not batching.dynamic and not batching.sequence:
            return f"{HINTS[component]}; dynamic batching is off: it would run several requests per execution"
        return HINTS[component]
    if batching.sequence:
        return f"queue dominates: requests wait for their sequence's slot: {more}"
    if size == 0:
        return f"queue dominates and the model cannot batch (max_batch_size 0): {more}"
    if not batching.dynamic:
        return (
            f"queue dominates and dynamic batching is off: enable it (the model takes batches up to "
            f"{size}) or {more}"
        )
    if avg_batch is not None and avg_batch >= FULL_BATCH * size:
        return (
            f"queue dominates and batches are full (average {avg_batch:.1f} of max_batch_size {size}): "
            f"raise max_batch_size or {more}"
        )
    shown = "" if avg_batch is None else f" while batches average {avg_batch:.1f} of {size}"
    delay = (
        f"the batcher's max_queue_delay ({batching.queue_delay_us} us) or " if batching.queue_delay_us else ""
    )
    return (
        f"queue dominates{shown}: requests wait for {delay}a busy instance: {more}"
        + (" or lower max_queue_delay_microseconds" if batching.queue_delay_us else "")
        + ("; a larger max_batch_size would not help" if avg_batch is not None else "")
    )
