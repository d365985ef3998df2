"""Open-loop load (MLPerf's "server" scenario): requests leave on a precomputed schedule.

Each request has three timestamps: intended (from the schedule), sent and done.
Its response time is done - intended, so a stalled server shows up in the
percentiles rather than slowing the sender down (no coordinated omission); its
service time is done - sent; the sender's lag is sent - intended.

asyncio's timers are only about a millisecond precise, so the sender waits for each
intended time with a :mod:`~loadgen.engine.pacing` pacer (a kernel timer, or a short
spin); it records its own lag, so a client that cannot keep up says so. A plain send is
written the moment it is decided, through its transport's :data:`~loadgen.transports.base.Starter`,
and finished by its answer's callback; other sends (streams, sequences, ``--validate``, a slot not
connected yet) run as a task each, which starts a loop turn later. A cap on
in-flight requests protects the client: a request whose time has come while the
cap is reached is refused and counted, never silently dropped or quietly delayed.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from loadgen.engine.cancelling import CANCELLED, Canceller, stream_call
from loadgen.engine.pacing import Pacer, pacer
from loadgen.engine.recorder import Discard, OpenWindow, drain
from loadgen.engine.schedules import Schedule
from loadgen.engine.sequences import OpenSequences
from loadgen.shared_memory import SlotOutputs
from loadgen.transports.base import (
    Arrivals,
    CapturedArrivals,
    CaptureSender,
    Sender,
    Starter,
    StreamSender,
    Transport,
)
from loadgen.validation import Validator, flatten_stream

DEFAULT_MAX_IN_FLIGHT = 1024
NEVER = 2**63 - 1


def shared_send_times(
    schedule: Schedule, origin_ns: int, stride: int = 1, offset: int = 0
) -> Iterator[npt.NDArray[np.int64]]:
    """One worker's intended send times, chunk by chunk: sends ``offset, offset + stride, ...`` of
    ``schedule`` started at ``origin_ns``. Workers given offsets ``0 .. stride-1`` each compute the
    whole schedule from its seed and so, between them, send every send of it exactly once."""
    sends_before = 0  # sends of the whole schedule before this chunk
    for chunk in schedule.gaps_ns():
        times = origin_ns + np.cumsum(chunk)
        origin_ns = int(times[-1])
        if stride > 1:
            first = (offset - sends_before) % stride
            sends_before += len(times)
            times = times[first::stride]
            if not len(times):
                continue
        yield times


class _Slot:
    """An in-flight slot of plain sends: its sender and starter, and the send it carries, reused
    send after send (a send written at once allocates only its answer's future)."""

    __slots__ = ("answered", "future", "intended", "send", "sent", "start")

    def __init__(self, send: Sender, start: Starter | None, answered: Callable[[_Slot, Any], None]) -> None:
        self.send, self.start = send, start
        self.intended = self.sent = 0
        self.future: asyncio.Future[str | None] | None = None
        self.answered = functools.partial(answered, self)


class OpenLoop:
    """Sends ``requests`` on ``schedule`` until :meth:`stop`."""

    def __init__(
        self,
        transport: Transport,
        requests: Sequence[Any],
        schedule: Schedule,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        validator: Validator | None = None,
        stride: int = 1,
        offset: int = 0,
        origin_ns: int | None = None,
        streaming: bool = False,
        canceller: Canceller | None = None,
        sequences: OpenSequences | None = None,
        slot_requests: Sequence[Sequence[Any]] | None = None,
        slot_outputs: SlotOutputs | None = None,
        pacing: str = "auto",
    ) -> None:
        """``stride``/``offset``: send only the schedule's sends ``offset, offset + stride, ...``
        (one worker's part of a schedule shared by ``stride`` workers, all from ``origin_ns``).
        ``sequences``: a sequence model's sends, spread over its active sequences in turn."""
        if not requests:
            raise ValueError("no prepared requests")
        self.transport = transport
        self.sequences = sequences
        self.slot_requests = slot_requests
        """``--output-shared-memory-size``: per sender, its own prepared requests (its region)."""
        self.slot_outputs = slot_outputs
        self.validator = validator
        self.streaming = streaming
        self.canceller = canceller
        self.stride, self.offset, self.origin_ns = stride, offset, origin_ns
        self.requests = list(requests)
        self.schedule = schedule
        self.max_in_flight = max_in_flight
        self.pacing = pacing
        self.level = schedule.label_rate
        self.concurrency = 0
        self.window: OpenWindow = Discard()
        self.in_flight = 0
        self._free: list[Any] = []
        """Idle senders (capture senders when validating)."""
        self._created = 0
        self._running = False
        self._dispatcher: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._slots: list[_Slot] = []
        """Every plain-send slot made: those carrying a written send hold its future."""
        # the schedule chunk being sent (absolute intended times) and how many came before it,
        # so that a window can say how many sends were due, even when the sender lags behind
        self._chunk_times: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._chunk_base = 0
        self._due_at_swap = 0
        self._chunks: Iterator[npt.NDArray[np.int64]] = iter(())
        self._times: list[int] = []  # the chunk's intended times as ints, and the next one's place
        self._at = 0
        self.next_due = NEVER
        """The next send's intended time (NEVER once the schedule is done)."""
        self._index = offset  # the next send's place in the whole schedule: which request it sends

    def _sender(self) -> Any:
        if self._free:
            return self._free.pop()
        if self._created < self.max_in_flight:
            self._created += 1
            if self.streaming:  # a stream sender and the arrival list it reuses
                send = self.transport.stream_sender(self._created - 1)  # type: ignore[attr-defined]
                canceller = self.canceller
                if canceller is not None:
                    return stream_call(canceller, send), canceller.arrivals()
                return send, Arrivals() if self.validator is None else CapturedArrivals()
            if self.slot_requests is not None:  # validating reads the sender's region, not the answer
                return self.transport.sender(self._created - 1), self._created - 1
            if self.validator is not None:
                return self.transport.capture_sender(self._created - 1)
            index = self._created - 1
            slot = _Slot(self.transport.sender(index), self.transport.starter(index), self._answered)
            self._slots.append(slot)
            return slot
        return None

    def _sent(self, intended: int) -> int:
        """The send's time, taken as its task starts, right before the request is written (a task
        runs a loop turn after it is made: up to tens of microseconds on a busy loop, which the lag
        must include); recorded as the send's lag."""
        sent = time.perf_counter_ns()
        self.window.record_send(sent - intended)
        return sent

    def _write(self, slot: _Slot, request: Any, intended: int) -> bool:
        """Write a plain send now, where its transport can (the common case); False if it cannot
        (not connected yet): a task then sends it."""
        if slot.start is None:
            return False
        sent = time.perf_counter_ns()
        future = slot.start(request)
        if future is None:
            return False
        self.window.record_send(sent - intended)
        slot.intended, slot.sent, slot.future = intended, sent, future
        future.add_done_callback(slot.answered)
        return True

    def _answered(self, slot: _Slot, future: asyncio.Future[str | None]) -> None:
        done = time.perf_counter_ns()
        slot.future = None
        self.in_flight -= 1
        self._free.append(slot)
        if future.cancelled():  # given up by stop()
            return
        self._record(future.result(), slot.intended, slot.sent, done)

    def _record(self, error: str | None, intended: int, sent: int, done: int) -> None:
        """Sends already due go out before this answer is recorded, not after it."""
        self.send_due()
        if error is None:
            self.window.record_open(done - intended, done - sent)
        else:
            self.window.error(error)

    async def _one(self, slot: _Slot, request: Any, intended: int) -> None:
        sent = self._sent(intended)
        error = await slot.send(request)
        done = time.perf_counter_ns()
        self.in_flight -= 1
        self._free.append(slot)
        self._record(error, intended, sent, done)

    async def _one_stream(self, entry: tuple[StreamSender, Arrivals], key: int, intended: int) -> None:
        sent = self._sent(intended)
        send, arrivals = entry
        arrivals.clear()
        error = await send(self.requests[key], arrivals)
        done = time.perf_counter_ns()
        self.in_flight -= 1
        self._free.append(entry)
        if self.next_due <= done:
            self.send_due()
        if error is None:
            self.window.record_open_stream(intended, sent, done, arrivals)
            if self.validator is not None and isinstance(arrivals, CapturedArrivals):
                self.window.check(self.validator, key, flatten_stream(arrivals.responses))
        elif error is CANCELLED:
            self.window.cancel()
        else:
            self.window.error(error)

    async def _one_in_sequence(self, send: Any, intended: int) -> None:
        """A sequence model's send: the next request of the next active sequence (with
        ``--serial-sequences``, once that sequence's previous request is answered: the wait
        counts, from the intended send)."""
        assert self.sequences is not None
        sent = self._sent(intended)
        cursor, turn = self.sequences.next_cursor()
        async with turn:
            request, where, _ = cursor.next()
            last, key, sequence_id = cursor.remaining == 0, cursor.check_key, cursor.id
            validator = self.validator
            if validator is None:
                error = await send(request)
            else:
                error, response = await send(request)
        done = time.perf_counter_ns()
        self.in_flight -= 1
        self._free.append(send)
        if self.next_due <= done:  # sends due go out before this answer is recorded and checked
            self.send_due()
        window = self.window
        if error is None:
            window.record_open_sequence(done - intended, done - sent, where, last)
            if validator is not None:
                window.check(validator, key, self.transport.parse_outputs(response), sequence_id)
        else:
            window.error(error)

    async def _one_in_region(self, entry: tuple[Sender, int], key: int, intended: int) -> None:
        """A send whose outputs the server writes to the sender's own region; ``--validate`` reads
        them back from there before the sender is free again."""
        send, slot = entry
        assert self.slot_requests is not None
        sent = self._sent(intended)
        error = await send(self.slot_requests[slot][key])
        done = time.perf_counter_ns()
        window, validator = self.window, self.validator
        if error is None:
            window.record_open(done - intended, done - sent)
            if validator is not None and self.slot_outputs is not None:
                window.check(validator, key, self.slot_outputs.read(slot, key, validator.references[key]))
        else:
            window.error(error)
        self.in_flight -= 1
        self._free.append(entry)
        if self.next_due <= done:  # not before: the region is read before its sender is free
            self.send_due()

    async def _one_checked(self, send: CaptureSender, validator: Validator, key: int, intended: int) -> None:
        sent = self._sent(intended)
        error, response = await send(self.requests[key])
        done = time.perf_counter_ns()
        self.in_flight -= 1
        self._free.append(send)
        self._record(error, intended, sent, done)
        if error is None:
            self.window.check(validator, key, self.transport.parse_outputs(response))

    async def _dispatch(self, pace: Pacer) -> None:
        clock = time.perf_counter_ns
        origin = clock() if self.origin_ns is None else self.origin_ns
        self._chunks = shared_send_times(self.schedule, origin, self.stride, self.offset)
        try:
            self._next_chunk()
            while self._running and self.next_due != NEVER:
                if clock() < self.next_due:
                    await pace.until(self.next_due)
                self.send_due()
        finally:
            pace.close()

    def _next_chunk(self) -> None:
        times = next(self._chunks, None)
        if times is None:
            self.next_due = NEVER
            return
        self._chunk_base += len(self._chunk_times)
        self._chunk_times = times
        self._times, self._at = times.tolist(), 0
        self.next_due = self._times[0]

    def send_due(self) -> None:
        """Send every send whose time has come. The dispatcher calls it when it wakes, and so does
        each answer as it is recorded: a send that falls due while the loop handles a burst of
        answers goes out between two of them, not after the whole burst."""
        now = time.perf_counter_ns()
        while self.next_due <= now and self._running:
            intended = self.next_due
            self._at += 1  # the schedule moves on first: a send can never be launched twice
            if self._at < len(self._times):
                self.next_due = self._times[self._at]
            else:
                self._next_chunk()
            self._launch(intended)

    def _launch(self, intended: int) -> None:
        index, self._index = self._index, self._index + self.stride
        send = self._sender()
        if send is None:
            self.window.refuse()
            return
        self.in_flight += 1
        key = index % len(self.requests)
        loop = asyncio.get_running_loop()
        if self.sequences is not None:
            task = loop.create_task(self._one_in_sequence(send, intended))
        elif self.slot_requests is not None:
            task = loop.create_task(self._one_in_region(send, key, intended))
        elif self.streaming:
            task = loop.create_task(self._one_stream(send, key, intended))
        elif self.validator is None:
            if self._write(send, self.requests[key], intended):
                return
            task = loop.create_task(self._one(send, self.requests[key], intended))
        else:
            task = loop.create_task(self._one_checked(send, self.validator, key, intended))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def start(self) -> None:
        """Start sending; a pacer that cannot be made (``--pacing timerfd`` without one) raises here,
        before the step, not silently inside the dispatcher."""
        pace = pacer(self.pacing, asyncio.get_running_loop())
        self._running = True
        self._dispatcher = asyncio.create_task(self._dispatch(pace), name="open-loop-dispatcher")

    def due_by(self, t_ns: int) -> int:
        """How many sends the schedule had due by ``t_ns`` (as far as the current chunk reaches)."""
        return self._chunk_base + int(np.searchsorted(self._chunk_times, t_ns, side="right"))

    def swap(self, window: OpenWindow) -> OpenWindow:
        previous, self.window = self.window, window
        due = self.due_by(time.perf_counter_ns())
        previous.due, self._due_at_swap = due - self._due_at_swap, due
        return previous

    async def cut(self) -> OpenWindow:
        """Start a new window; returns the one that ends."""
        ending = self.swap(OpenWindow())
        ending.mark(last=True)
        return ending

    def mark(self) -> None:
        self.window.mark()

    async def stop(self) -> int:
        """Stop sending, let in-flight requests finish (discarded); returns how many were in flight."""
        self._running = False
        in_flight = self.in_flight
        self.window = Discard()
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            dispatcher.cancel()
            (failed,) = await asyncio.gather(dispatcher, return_exceptions=True)
        writes = [slot.future for slot in self._slots if slot.future is not None]
        if self._pending or writes:
            await drain([*self._pending, *writes])
        if dispatcher is not None and isinstance(failed, Exception):
            raise failed  # the sender died mid-step: say why, never store its silence as a result
        return in_flight
