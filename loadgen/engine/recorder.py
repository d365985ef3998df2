"""Where completed requests are recorded: one :class:`Window` per measurement window.

The load generator measures; the window records. Swapping the current window is
a single attribute store, so the engine can cut windows while load runs. Also here,
because both loads share them: merging the windows of several workers, and draining the
requests still in flight when a load stops.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from loadgen.batches import Batches
from loadgen.histogram import LatencyHistogram
from loadgen.results import WindowResult
from loadgen.tallies import SequenceTally, StreamTally, ValidationTally
from loadgen.transports.base import Arrivals, OutputTensor
from loadgen.validation import Validator


def _tokens(arrivals: Sequence[int]) -> int | None:
    """The tokens a transport counted into a slot's :class:`Arrivals` (None: one per response)."""
    return arrivals.tokens if isinstance(arrivals, Arrivals) else None


class Window:
    """Counts and latency histogram of the requests that *completed* in one window."""

    __slots__ = (
        "batches",
        "cancelled",
        "errors",
        "histogram",
        "requests",
        "sequences",
        "stalled",
        "stream",
        "validation",
    )

    def __init__(self) -> None:
        self.histogram = LatencyHistogram(recent=True)
        self.requests = 0
        self.errors: dict[str, int] = {}
        self.validation: ValidationTally | None = None
        """``--validate`` only: the answers checked in this window."""
        self.stalled = 0
        """Closed loop: slots whose request was sent before the window began and was still
        unanswered when it ended, so the server served fewer requests at once than asked."""
        self.stream: StreamTally | None = None
        """``--streaming`` only: the responses of the requests that completed in this window."""
        self.cancelled = 0
        """``--cancel-after-*``: requests cancelled on purpose, neither answers nor errors."""
        self.sequences: SequenceTally | None = None
        """A sequence model only: the latencies by place in the sequence."""
        self.batches = Batches()
        """The latencies cut into consecutive batches by :meth:`mark` (for correlation)."""

    def mark(self, *, last: bool = False) -> None:
        """End a batch of :attr:`batches` (the step marks each window ``BATCHES_PER_WINDOW`` times;
        ``last``: the cut that ends the window)."""
        self.batches.mark(self.histogram, last=last)

    def record(self, latency_ns: int) -> None:
        self.requests += 1
        self.histogram.record_ns(latency_ns)

    def record_sequence(self, latency_ns: int, where: int, last: bool) -> None:
        """A sequence model's request: ``where`` it sits (:data:`~loadgen.engine.sequences.START`,
        MIDDLE or END, as an index of the tally's histograms) and whether it ended its sequence."""
        self.requests += 1
        self.histogram.record_ns(latency_ns)
        if self.sequences is None:
            self.sequences = SequenceTally()
        tally = self.sequences
        (tally.start, tally.middle, tally.end)[where].record_ns(latency_ns)
        tally.ended += last

    def record_stream(self, start_ns: int, end_ns: int, arrivals: Sequence[int]) -> None:
        """A streamed request: its end (the final response) in ``histogram``, its responses'
        arrivals in :attr:`stream`."""
        self.requests += 1
        self.histogram.record_ns(end_ns - start_ns)
        if self.stream is None:
            self.stream = StreamTally()
        self.stream.record(start_ns, arrivals, _tokens(arrivals))

    def error(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1

    def cancel(self) -> None:
        self.cancelled += 1

    def check(
        self,
        validator: Validator,
        key: int,
        outputs: Mapping[str, OutputTensor],
        sequence_id: int | None = None,
    ) -> None:
        if self.validation is None:
            self.validation = ValidationTally()
        validator.check(key, outputs, self.validation, sequence_id)

    def result(self, duration_s: float, batch_size: int) -> WindowResult:
        mean = self.histogram.mean_us if self.requests else math.nan
        return WindowResult(
            duration_s=duration_s,
            request_count=self.requests,
            inference_count=self.requests * batch_size,
            error_count=sum(self.errors.values()),
            mean_latency_us=mean,
        )


class OpenWindow(Window):
    """An open-loop window: response time (from the intended send) in ``histogram``,
    service time (from the actual send) in ``service``, and the sender's own lag.

    Sends and refusals are counted in the window in which they *happened*.
    """

    __slots__ = ("due", "lag", "refused", "sent", "service")

    def __init__(self) -> None:
        super().__init__()
        self.service = LatencyHistogram()
        self.lag = LatencyHistogram()
        self.sent = 0
        self.refused = 0
        self.due = 0
        """Sends the schedule had due during the window (set when the window is cut)."""

    def record_open(self, response_ns: int, service_ns: int) -> None:
        self.requests += 1
        self.histogram.record_ns(response_ns)
        self.service.record_ns(service_ns)

    def record_open_stream(
        self, intended_ns: int, sent_ns: int, done_ns: int, arrivals: Sequence[int]
    ) -> None:
        """A streamed request: its final response from the intended and the actual send, and its
        responses timed from the intended send (so a late sender cannot hide queueing)."""
        self.requests += 1
        self.histogram.record_ns(done_ns - intended_ns)
        self.service.record_ns(done_ns - sent_ns)
        if self.stream is None:
            self.stream = StreamTally()
        self.stream.record(intended_ns, arrivals, _tokens(arrivals))

    def record_open_sequence(self, response_ns: int, service_ns: int, where: int, last: bool) -> None:
        """A sequence model's request: as :meth:`record_open`, and by its place in the sequence
        (from the intended send, as the main histogram)."""
        self.record_sequence(response_ns, where, last)
        self.service.record_ns(service_ns)

    def record_send(self, lag_ns: int) -> None:
        self.sent += 1
        self.lag.record_ns(lag_ns)

    def refuse(self) -> None:
        self.refused += 1


class Discard(OpenWindow):
    """Warm-up and drain: completions are counted nowhere."""

    __slots__ = ()

    def record(self, latency_ns: int) -> None:
        pass

    def record_stream(self, start_ns: int, end_ns: int, arrivals: Sequence[int]) -> None:
        pass

    def record_sequence(self, latency_ns: int, where: int, last: bool) -> None:
        pass

    def error(self, reason: str) -> None:
        pass

    def cancel(self) -> None:
        pass

    def record_open(self, response_ns: int, service_ns: int) -> None:
        pass

    def record_open_stream(
        self, intended_ns: int, sent_ns: int, done_ns: int, arrivals: Sequence[int]
    ) -> None:
        pass

    def record_open_sequence(self, response_ns: int, service_ns: int, where: int, last: bool) -> None:
        pass

    def record_send(self, lag_ns: int) -> None:
        pass

    def mark(self, *, last: bool = False) -> None:
        pass

    def refuse(self) -> None:
        pass

    def check(
        self,
        validator: Validator,
        key: int,
        outputs: Mapping[str, OutputTensor],
        sequence_id: int | None = None,
    ) -> None:
        pass


def merge_windows(windows: Sequence[Window]) -> Window:
    """The windows of several workers over the same interval as one window (exact: counts add,
    histograms merge, validation tallies merge); open-loop if any part is."""
    merged: Window = OpenWindow() if any(isinstance(w, OpenWindow) for w in windows) else Window()
    for window in windows:
        merged.requests += window.requests
        merged.stalled += window.stalled  # workers' slots are disjoint
        merged.cancelled += window.cancelled
        merged.histogram.merge(window.histogram)
        merged.batches.merge(window.batches)
        for reason, count in window.errors.items():
            merged.errors[reason] = merged.errors.get(reason, 0) + count
        if window.validation is not None:
            if merged.validation is None:
                merged.validation = ValidationTally()
            merged.validation.merge(window.validation)
        if window.stream is not None:
            if merged.stream is None:
                merged.stream = StreamTally()
            merged.stream.merge(window.stream)
        if window.sequences is not None:
            if merged.sequences is None:
                merged.sequences = SequenceTally()
            merged.sequences.merge(window.sequences)
        if isinstance(merged, OpenWindow) and isinstance(window, OpenWindow):
            merged.service.merge(window.service)
            merged.lag.merge(window.lag)
            merged.sent += window.sent
            merged.refused += window.refused
            merged.due += window.due
    return merged


DRAIN_TIMEOUT_S = 10.0
"""How long a stopping load waits for its in-flight requests before cancelling them."""


async def drain(tasks: Collection[asyncio.Future[Any]]) -> None:
    """Let ``tasks`` (requests in flight) finish, cancelling what is left after DRAIN_TIMEOUT_S:
    a request the server never answers must not hold the sweep."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT_S)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
