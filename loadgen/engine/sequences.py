"""Sequences of a stateful model (Triton's sequence batcher): which request each send carries,
under which correlation id, and whether it starts or ends its sequence.

perf_analyzer's semantics: a sequence's length is drawn uniformly within ``variation_pct`` of
``length`` (at least 1), or, for input data given as streams (perf_analyzer's JSON with a list
per sequence) without ``--sequence-length``, is its stream's own length; step i of a sequence
sends entry i of its stream (cycling where the sequence is longer). Streams are taken in turn.
Ids run round-robin over ``[id_start, id_end)``, skipping ids still in use, so that several
loadgens given disjoint ranges never share one.

:class:`Sequences` lives for a whole sweep: the slots of each step pick up the sequences the
previous step left open (ids and state stay consistent), and :meth:`Sequences.open_ends` lists
the sequences to end when the sweep stops, so none is left holding the server's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from loadgen.transports.base import OutputTensor, SequenceRequests, Transport
from loadgen.validation import ReferenceFailed

START, MIDDLE, END = 0, 1, 2
"""Where a request sits in its sequence (a one-request sequence counts as a start)."""


@dataclass(frozen=True)
class SequencePlan:
    """How a sequence model's requests are sent (built from the settings and the model's config)."""

    streams: tuple[tuple[int, ...], ...]
    """Per data stream, the indices of the requests its steps send, in order."""
    length: int
    variation_pct: float
    own_lengths: bool
    """Each sequence is as long as its stream (input data in streams, no ``--sequence-length``)."""
    id_start: int
    id_end: int
    string_ids: bool
    seed: int = 0
    active: int = 1
    """Open loop: the sequences active at once (``--num-of-sequences``)."""
    serial: bool = False
    """Open loop: a sequence's next request waits for the previous answer (``--serial-sequences``)."""

    def part(self, index: int, parts: int, active: int) -> SequencePlan:
        """Worker ``index`` of ``parts``: its own slice of the id range (no two workers ever share
        an id), ``active`` sequences of its own and its own lengths' seed."""
        size = self.id_end - self.id_start
        return replace(
            self,
            id_start=self.id_start + size * index // parts,
            id_end=self.id_start + size * (index + 1) // parts,
            active=active,
            seed=self.seed + index,
        )

    def reference_lengths(self) -> list[int]:
        """Per stream, the steps its reference sequence runs (``--validate``): the stream's own
        length, or the longest a drawn length can be."""
        if self.own_lengths:
            return [len(stream) for stream in self.streams]
        longest = max(1, round(self.length * (1.0 + self.variation_pct / 100.0)))
        return [longest] * len(self.streams)


class SequenceIds:
    """Correlation ids in turn over ``[start, end)``, never one still in use."""

    def __init__(self, start: int, end: int) -> None:
        self.start, self.size = start, end - start
        self._next = 0
        self.in_use: set[int] = set()

    def take(self) -> int:
        for _ in range(len(self.in_use) + 1):
            candidate = self.start + self._next
            self._next = (self._next + 1) % self.size
            if candidate not in self.in_use:
                self.in_use.add(candidate)
                return candidate
        raise RuntimeError(f"all {self.size} sequence ids are in use")  # the settings' rule prevents it

    def release(self, sequence_id: int) -> None:
        self.in_use.discard(sequence_id)


class Cursor:
    """One slot's place in its current sequence. The id stays taken until the slot begins its next
    sequence: an id freed as its end request goes out could start another sequence on another
    connection before that end arrives."""

    __slots__ = ("id", "key", "remaining", "sequences", "step", "stream")

    def __init__(self, sequences: Sequences) -> None:
        self.sequences = sequences
        self.id = 0
        self.stream: tuple[int, ...] = ()
        self.step = 0
        self.remaining = 0
        self.key = 0
        """The stream's index: with the step, what ``--validate`` compares against."""

    def next(self) -> tuple[Any, int, int]:
        """The next send: its prepared request, where it sits (:data:`START`...) and its step."""
        sequences = self.sequences
        if self.remaining == 0:
            if self.stream:  # the previous sequence's id, held until now: its end was answered
                sequences.ids.release(self.id)
            self.id, self.key, self.stream, self.remaining = sequences.begin()
            self.step = 0
        step, self.step, self.remaining = self.step, self.step + 1, self.remaining - 1
        end = self.remaining == 0
        index = self.stream[step % len(self.stream)]
        shown: int | str = str(self.id) if sequences.plan.string_ids else self.id
        prepared = sequences.templates[index].request(shown, step == 0, end)
        return prepared, START if step == 0 else END if end else MIDDLE, step

    @property
    def check_key(self) -> int:
        """``--validate``: the key of the reference of the step just taken (:meth:`Sequences.key`)."""
        return self.sequences.key(self.key, self.step - 1)


class Sequences:
    """The sequences of one sweep: ids, stream turns, lengths, and each slot's cursor."""

    def __init__(self, plan: SequencePlan, templates: Sequence[SequenceRequests]) -> None:
        self.plan = plan
        self.templates = list(templates)
        self.ids = SequenceIds(plan.id_start, plan.id_end)
        self._random = random.Random(plan.seed)
        self._turn = 0
        self.cursors: list[Cursor] = []
        self._lengths = plan.reference_lengths()
        self._offsets = [sum(self._lengths[:stream]) for stream in range(len(self._lengths))]
        """Where each stream's references start in the flat list the validator holds."""

    def key(self, stream: int, step: int) -> int:
        """The reference of a stream's step, in the flat list the validator holds (a longer
        sequence than its reference can draw has none: the last step's key stands in)."""
        return self._offsets[stream] + min(step, self._lengths[stream] - 1)

    def name(self, key: int) -> str:
        """A reference key as messages say it: the stream and the step."""
        for stream, length in enumerate(self._lengths):
            if key < length:
                return f"step {key} of stream {stream}" if len(self._lengths) > 1 else f"step {key}"
            key -= length
        return f"reference {key}"

    def cursor(self, slot: int) -> Cursor:
        while len(self.cursors) <= slot:
            self.cursors.append(Cursor(self))
        return self.cursors[slot]

    def begin(self) -> tuple[int, int, tuple[int, ...], int]:
        """A new sequence: (id, stream index, stream, length)."""
        plan = self.plan
        key = self._turn % len(plan.streams)
        self._turn += 1
        stream = plan.streams[key]
        if plan.own_lengths:
            length = len(stream)
        else:
            spread = self._random.uniform(-1.0, 1.0) * plan.variation_pct / 100.0 * plan.length
            length = max(1, round(plan.length + spread))
        return self.ids.take(), key, stream, length

    def open_ends(self) -> list[Any]:
        """One request per sequence still open, that ends it (sent when the sweep stops)."""
        ends = []
        for cursor in self.cursors:
            if cursor.remaining:
                cursor.remaining = 1
                ends.append(cursor.next()[0])
        return ends


class OpenSequences:
    """Open loop: the plan's ``active`` sequences at once, each send going to the next in turn.
    With ``serial``, a sequence's next request waits for the previous answer (a FIFO lock per
    sequence); else it goes out on schedule, several of a sequence in flight, as perf_analyzer
    sends them."""

    def __init__(self, sequences: Sequences) -> None:
        count, serial = sequences.plan.active, sequences.plan.serial
        self.sequences = sequences
        self.cursors = [sequences.cursor(slot) for slot in range(count)]
        self.turns: list[contextlib.AbstractAsyncContextManager[Any]] = [
            asyncio.Lock() if serial else contextlib.nullcontext() for _ in range(count)
        ]
        self._next = 0

    def next_cursor(self) -> tuple[Cursor, contextlib.AbstractAsyncContextManager[Any]]:
        turn = self._next
        self._next = (turn + 1) % len(self.cursors)
        return self.cursors[turn], self.turns[turn]


END_TIMEOUT_S = 10.0
"""How long the requests that end the open sequences may take, all together."""


async def end_sequences(transport: Transport, sequences: Sequences) -> None:
    """Send the request that ends each sequence left open, so that the server frees its state (and,
    with the direct strategy, its batch slot) now rather than after its idle timeout. Failures are
    not the sweep's: the server drops idle sequences by itself."""
    ends = sequences.open_ends()
    if not ends:
        return
    senders = [transport.sender(slot) for slot in range(len(ends))]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(END_TIMEOUT_S):
            await asyncio.gather(*(send(end) for send, end in zip(senders, ends, strict=True)))


async def take_sequence_references(
    transport: Transport, sequences: Sequences
) -> list[dict[str, OutputTensor]]:
    """``--validate``: each stream run alone as one sequence as long as any can be (one request at
    a time), its answers step by step: what every sequence under load must answer, since a
    sequence's answers depend only on its own requests so far."""
    plan, send = sequences.plan, transport.capture_sender(0)
    references: list[dict[str, OutputTensor]] = []
    for stream, length in zip(plan.streams, plan.reference_lengths(), strict=True):
        sequence_id = sequences.ids.take()
        shown: int | str = str(sequence_id) if plan.string_ids else sequence_id
        for step in range(length):
            request = sequences.templates[stream[step % len(stream)]].request(
                shown, step == 0, step == length - 1
            )
            error, response = await send(request)
            if error is not None:
                raise ReferenceFailed(f"the reference sequence (alone, step {step}) failed: {error}")
            references.append(transport.parse_outputs(response))
        sequences.ids.release(sequence_id)
    return references
