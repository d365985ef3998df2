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
from dataclasses import dataclass
from typing import Any

from loadgen.transports.base import SequenceRequests, Transport

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

    def max_length(self) -> int:
        """The longest sequence the plan can draw."""
        if self.own_lengths:
            return max(len(stream) for stream in self.streams)
        return max(1, round(self.length * (1.0 + self.variation_pct / 100.0)))


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
    """One slot's place in its current sequence."""

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
        """The next send: its prepared request, where it sits (:data:`START`...) and its request index."""
        sequences = self.sequences
        if self.remaining == 0:
            self.id, self.key, self.stream, self.remaining = sequences.begin()
            self.step = 0
        step, self.step, self.remaining = self.step, self.step + 1, self.remaining - 1
        end = self.remaining == 0
        index = self.stream[step % len(self.stream)]
        shown: int | str = str(self.id) if sequences.plan.string_ids else self.id
        prepared = sequences.templates[index].request(shown, step == 0, end)
        if end:
            sequences.ids.release(self.id)
        return prepared, START if step == 0 else END if end else MIDDLE, index


class Sequences:
    """The sequences of one sweep: ids, stream turns, lengths, and each slot's cursor."""

    def __init__(self, plan: SequencePlan, templates: Sequence[SequenceRequests]) -> None:
        self.plan = plan
        self.templates = list(templates)
        self.ids = SequenceIds(plan.id_start, plan.id_end)
        self._random = random.Random(plan.seed)
        self._turn = 0
        self.cursors: list[Cursor] = []
        self.begun = 0

    def cursor(self, slot: int) -> Cursor:
        while len(self.cursors) <= slot:
            self.cursors.append(Cursor(self))
        return self.cursors[slot]

    def begin(self) -> tuple[int, int, tuple[int, ...], int]:
        """A new sequence: (id, stream index, stream, length)."""
        plan = self.plan
        key = self._turn % len(plan.streams)
        self._turn += 1
        self.begun += 1
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
