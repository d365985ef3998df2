"""How far a remote worker's clock is from the coordinator's: measured, never assumed.

Latencies never cross hosts (a request is timed where it is sent), but an open-loop step
starts one shared schedule on every worker at the same instant, so each worker's offset
is measured before the step the way NTP does: a call bracketed by the coordinator's send
and receive times, the remote stamp assumed at the midpoint; of several calls the one
with the shortest round trip is kept, and half that round trip bounds the error.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

CLOCK_SAMPLES = 7
"""Calls per worker and step; the shortest round trip wins."""


@dataclass(frozen=True)
class ClockOffset:
    """A worker's clock minus the coordinator's, within +- ``uncertainty_ns``."""

    offset_ns: int
    uncertainty_ns: int


def best_offset(samples: Iterable[tuple[int, int, int]]) -> ClockOffset:
    """From ``(sent, remote, received)`` stamps (coordinator, worker, coordinator clocks): the
    offset of the sample with the shortest round trip."""
    sent, remote, received = min(samples, key=lambda s: s[2] - s[0])
    if received < sent:
        raise ValueError("a clock sample was received before it was sent")
    return ClockOffset(remote - (sent + received) // 2, (received - sent + 1) // 2)


async def measure_offset(remote_now: Callable[[], Awaitable[int]]) -> ClockOffset:
    """A worker's offset from :data:`CLOCK_SAMPLES` calls of ``remote_now`` (its wall clock, ns),
    each bracketed by the coordinator's."""
    samples = []
    for _ in range(CLOCK_SAMPLES):
        sent = time.time_ns()
        remote = await remote_now()
        samples.append((sent, remote, time.time_ns()))
    return best_offset(samples)
