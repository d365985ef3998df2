"""Closed-loop load (MLPerf's "server at fixed concurrency"): exactly C requests in flight.

Each of C slots sends, awaits the answer, records the latency into the current
window and sends again. The hot path is one clock read before and after an
await on pre-serialized bytes, one record call, and one store of the send time
into the slot's cell: at a window cut, a slot whose request is older than the window
got no answer in it (the server is serving fewer than C requests: :attr:`Window.stalled`).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from loadgen.engine.cancelling import CANCELLED, Canceller, stream_call
from loadgen.engine.recorder import Discard, Window, drain
from loadgen.engine.sequences import Sequences
from loadgen.shared_memory import SlotOutputs
from loadgen.tracing import SendLog
from loadgen.transports.base import Arrivals, CapturedArrivals, TaggedRequests, Transport
from loadgen.transports.reasons import is_connection_failure
from loadgen.validation import Validator, flatten_stream

BACK_OFF_S = 0.01
"""A slot's pause after its connection failed: a server that is gone refuses at once, and a slot
that reconnected at once would spin. Any answer the server sends, errors included, is followed by
the next request at once, on every transport (:func:`is_connection_failure`)."""


T = TypeVar("T")


def _from_slot(items: Sequence[T], index: int) -> Iterator[T]:
    """``items`` over and over, slot ``index`` starting at its own place, so that the slots of a
    step do not all send the same request at once."""
    return itertools.cycle([*items[index % len(items) :], *items[: index % len(items)]])


class ClosedLoop:
    """Keeps ``concurrency`` requests in flight until :meth:`stop`."""

    def __init__(
        self,
        transport: Transport,
        requests: Sequence[Any],
        concurrency: int,
        *,
        validator: Validator | None = None,
        streaming: bool = False,
        canceller: Canceller | None = None,
        sequences: Sequences | None = None,
        slot_requests: Sequence[Sequence[Any]] | None = None,
        slot_outputs: SlotOutputs | None = None,
        traced: tuple[Sequence[TaggedRequests], SendLog] | None = None,
    ) -> None:
        if not requests:
            raise ValueError("no prepared requests")
        self.transport = transport
        self.requests = list(requests)
        self.concurrency = concurrency
        self.validator = validator
        self.streaming = streaming
        self.canceller = canceller
        self.sequences = sequences
        self.slot_requests = slot_requests
        """Per slot, its own prepared requests (each slot's output region); None: ``requests``."""
        self.slot_outputs = slot_outputs
        """``--output-shared-memory-size``: where ``--validate`` reads each slot's answers."""
        self.traced = traced
        """``--trace-rate``: the requests with room for an id, and the log of each send's times."""
        self.level: float = concurrency
        self.window: Window = Discard()
        self._running = False
        self._tasks: list[asyncio.Task[None]] = []
        self._sent_at = [0] * concurrency
        """Per slot: perf_counter_ns of its request in flight (or of its last one)."""
        self._window_opened = 0

    async def _slot(self, index: int) -> None:
        send = self.transport.sender(index)
        clock = time.perf_counter_ns
        sent_at = self._sent_at
        own = list(self.slot_requests[index]) if self.slot_requests is not None else self.requests
        requests = _from_slot(own, index)
        while self._running:
            request = next(requests)
            start = sent_at[index] = clock()
            error = await send(request)
            if error is None:
                self.window.record(clock() - start)
            else:
                self.window.error(error)
                if is_connection_failure(error):
                    await asyncio.sleep(BACK_OFF_S)

    async def _traced_slot(self, index: int) -> None:
        """As :meth:`_slot`, each send with an id of its own (``--trace-rate``), its send and answer
        times logged so that Triton's trace of it can be joined."""
        assert self.traced is not None
        tagged, log = self.traced
        send = self.transport.sender(index)
        clock = time.perf_counter_ns
        sent_at = self._sent_at
        requests = _from_slot(tagged, index)
        while self._running:
            at, request_id = log.next_id()
            request = next(requests).request(request_id)
            start = sent_at[index] = clock()
            error = await send(request)
            if error is None:
                end = clock()
                self.window.record(end - start)
                log.answered(at, start, end)
            else:
                self.window.error(error)
                if is_connection_failure(error):
                    await asyncio.sleep(BACK_OFF_S)

    async def _sequence_slot(self, index: int, validator: Validator | None) -> None:
        """As :meth:`_slot` for a sequence model: the slot runs one sequence at a time, each request
        sent after the previous one's answer (:class:`~loadgen.engine.sequences.Cursor`); with
        ``validator`` each answer is checked against its step's reference."""
        assert self.sequences is not None
        cursor = self.sequences.cursor(index)
        send: Any = self.transport.capture_sender(index) if validator else self.transport.sender(index)
        parse = self.transport.parse_outputs
        clock = time.perf_counter_ns
        sent_at = self._sent_at
        while self._running:
            request, where, _ = cursor.next()
            last = cursor.remaining == 0
            start = sent_at[index] = clock()
            error: str | None
            if validator is None:
                error = await send(request)
            else:
                error, response = await send(request)
            if error is None:
                window = self.window
                window.record_sequence(clock() - start, where, last)
                if validator is not None:
                    window.check(validator, cursor.check_key, parse(response), cursor.id)
            else:
                self.window.error(error)
                if is_connection_failure(error):
                    await asyncio.sleep(BACK_OFF_S)

    async def _stream_slot(self, index: int) -> None:
        """As :meth:`_slot` over a stream: busy until the request's final response; each response
        with outputs is time-stamped by the transport into one list the slot reuses."""
        send = stream_call(self.canceller, self.transport.stream_sender(index))  # type: ignore[attr-defined]
        clock = time.perf_counter_ns
        sent_at = self._sent_at
        arrivals = self.canceller.arrivals() if self.canceller is not None else Arrivals()
        requests = _from_slot(self.requests, index)
        while self._running:
            request = next(requests)
            arrivals.clear()
            start = sent_at[index] = clock()
            error = await send(request, arrivals)
            if error is None:
                self.window.record_stream(start, clock(), arrivals)
            elif error is CANCELLED:
                self.window.cancel()
            else:
                self.window.error(error)
                if is_connection_failure(error):
                    await asyncio.sleep(BACK_OFF_S)

    async def _checked_stream_slot(self, index: int, validator: Validator) -> None:
        """As :meth:`_stream_slot`, each whole stream checked against its request's reference."""
        send = self.transport.stream_sender(index)  # type: ignore[attr-defined]
        clock = time.perf_counter_ns
        sent_at = self._sent_at
        arrivals = CapturedArrivals()
        n = len(self.requests)
        keys = itertools.cycle([(index + k) % n for k in range(n)])
        while self._running:
            key = next(keys)
            arrivals.clear()
            start = sent_at[index] = clock()
            error = await send(self.requests[key], arrivals)
            window = self.window
            if error is None:
                window.record_stream(start, clock(), arrivals)
                window.check(validator, key, flatten_stream(arrivals.responses))
            else:
                window.error(error)
                if is_connection_failure(error):
                    await asyncio.sleep(BACK_OFF_S)

    async def _checked_slot(self, index: int, validator: Validator) -> None:
        """As :meth:`_slot`, also checking each answer against its request's reference (read
        from the slot's output region when the server writes outputs to shared memory)."""
        shared = self.slot_outputs
        send: Any = self.transport.capture_sender(index) if shared is None else self.transport.sender(index)
        parse = self.transport.parse_outputs
        clock = time.perf_counter_ns
        sent_at = self._sent_at
        own = self.requests if self.slot_requests is None else list(self.slot_requests[index])
        n = len(own)
        keys = itertools.cycle([(index + k) % n for k in range(n)])
        response: Any = None
        while self._running:
            key = next(keys)
            start = sent_at[index] = clock()
            if shared is None:
                error, response = await send(own[key])
            else:
                error = await send(own[key])
            latency = clock() - start
            window = self.window
            if error is None:
                window.record(latency)
                if shared is None:
                    window.check(validator, key, parse(response))
                else:
                    window.check(validator, key, shared.read(index, key, validator.references[key]))
            else:
                window.error(error)
                if is_connection_failure(error):
                    await asyncio.sleep(BACK_OFF_S)

    def start(self) -> None:
        self._running = True
        self._window_opened = time.perf_counter_ns()
        validator = self.validator
        self._tasks = [
            asyncio.create_task(self._slot_task(i, validator), name=f"slot-{i}")
            for i in range(self.concurrency)
        ]

    def _slot_task(self, index: int, validator: Validator | None) -> Coroutine[Any, Any, None]:
        if self.sequences is not None:
            return self._sequence_slot(index, validator)
        if self.traced is not None:
            return self._traced_slot(index)
        if self.streaming:
            return (
                self._stream_slot(index) if validator is None else self._checked_stream_slot(index, validator)
            )
        return self._slot(index) if validator is None else self._checked_slot(index, validator)

    @property
    def in_flight(self) -> int:
        return self.concurrency if self._running else 0

    def swap(self, window: Window) -> Window:
        """Make ``window`` current; returns the one that was."""
        previous, self.window = self.window, window
        return previous

    async def cut(self) -> Window:
        """Start a new window; returns the one that ends, with its stalled slots counted."""
        ending = self.swap(Window())
        if self.traced is not None and self._running:
            self.traced[1].cut(time.perf_counter_ns())
        opened, self._window_opened = self._window_opened, time.perf_counter_ns()
        ending.stalled = sum(1 for t in self._sent_at if t < opened) if self._running else 0
        ending.mark(last=True)
        return ending

    def mark(self) -> None:
        self.window.mark()

    async def stop(self) -> int:
        """Let in-flight requests finish (their results are discarded); returns how many were in flight."""
        in_flight = self.in_flight
        self._running = False
        self.window = Discard()
        if self._tasks:
            await drain(self._tasks)
        self._tasks = []
        return in_flight

    def cancel(self) -> None:
        self._running = False
        for task in self._tasks:
            task.cancel()
