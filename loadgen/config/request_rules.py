"""The rules of the options that shape each request: a sequence model's (with perf_analyzer's
defaults) and shared memory's.

Whether a run is a sequence run is the model's to say (``sequence_batching`` in its config), so
the settings only hold what the user chose; :func:`sequence_rules` checks what can be checked
without the server, the runner the rest (a sequence option on a model without sequences)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

DEFAULT_LENGTH = 20
DEFAULT_VARIATION_PCT = 20.0
DEFAULT_SEQUENCES = 4
"""perf_analyzer's defaults for ``--sequence-length``, ``--sequence-length-variation`` and
``--num-of-sequences``."""

Rule = tuple[bool, str, str]


def sequences_in_flight(levels: Sequence[float], closed: bool, count: int | None) -> int:
    """The most sequences a run has open at once, each needing its own id: the highest concurrency
    in closed loop, the active sequences (``--num-of-sequences``) in open loop."""
    return int(max(levels, default=1)) if closed else (count or DEFAULT_SEQUENCES)


def sequence_rules(
    length: int | None,
    variation: float | None,
    count: int | None,
    id_range: tuple[int, int] | None,
    levels: Sequence[float],
    closed: bool,
) -> list[Rule]:
    """The rules of the sequence options (``(holds, key, message)``, as ``problems()`` takes them)."""
    in_flight = sequences_in_flight(levels, closed, count)
    room = id_range[1] - id_range[0] if id_range is not None else in_flight
    held = "the highest concurrency" if closed else "the sequences active at once ({num_of_sequences})"
    return [
        (length is None or length >= 1, "sequence_length", f"{{sequence_length}} must be >= 1, got {length}"),
        (
            variation is None or 0.0 <= variation <= 100.0,
            "sequence_length_variation",
            f"{{sequence_length_variation}} must be a percentage within 0..100, got {variation}",
        ),
        (count is None or count >= 1, "num_of_sequences", f"{{num_of_sequences}} must be >= 1, got {count}"),
        (
            room >= in_flight,
            "sequence_id_range",
            f"{{sequence_id_range}} holds {room} id(s), fewer than {held}, {in_flight}: each sequence in "
            "flight needs its own id",
        ),
    ]


def shared_memory_rules(
    where: str, output_size: int | None, *, http_stream: bool, streaming: bool
) -> list[Rule]:
    """The rules of ``--shared-memory`` and ``--output-shared-memory-size``."""
    return [
        (
            where in ("none", "system"),
            "shared_memory",
            "{shared_memory} cuda needs a GPU and is not supported: use system (inputs in POSIX shared "
            "memory) or none"
            if where == "cuda"
            else f"{{shared_memory}} must be none, system or cuda, got {where!r}",
        ),
        (
            not (where == "system" and http_stream),
            "shared_memory",
            "{shared_memory} system cannot go with HTTP {streaming}: generate_stream carries inputs as "
            "JSON values; use gRPC",
        ),
        (
            output_size is None or (output_size > 0 and where == "system"),
            "output_shared_memory_size",
            "{output_shared_memory_size} goes with {shared_memory} system and must be > 0 bytes",
        ),
        (
            output_size is None or not streaming,
            "output_shared_memory_size",
            "{output_shared_memory_size} does not work with {streaming} yet",
        ),
    ]


class Traced(Protocol):
    """The settings :func:`trace_rules` reads."""

    @property
    def trace_rate(self) -> int: ...
    @property
    def trace_count(self) -> int: ...
    @property
    def trace_file(self) -> str | None: ...
    @property
    def scenario(self) -> str: ...
    @property
    def workers(self) -> int | None: ...
    @property
    def ray(self) -> str: ...
    @property
    def protocol(self) -> str: ...
    @property
    def grpc_client(self) -> str: ...
    @property
    def streaming(self) -> bool: ...
    @property
    def validate(self) -> bool: ...
    @property
    def output_shared_memory_size(self) -> int | None: ...


def trace_rules(s: Traced) -> list[Rule]:
    """The rules of ``--trace-rate``: a closed-loop sweep in one process, for now. Over gRPC it
    sends with grpc.aio: Triton 2.51 crashes under heavy tracing (SIGSEGV in
    ``TRITONBACKEND_RequestRelease``), most often with loadgen's faster lean client (README)."""
    traced = s.trace_rate > 0
    rules: list[Rule] = [
        (
            not (traced and s.protocol == "grpc" and s.grpc_client == "h2"),
            "grpc_client",
            "{trace_rate} over gRPC needs {grpc_client} aio: Triton 2.51 crashes tracing calls from "
            "loadgen's lean client (left out, {trace_rate} picks aio)",
        ),
        (
            s.trace_rate >= 0,
            "trace_rate",
            f"{{trace_rate}} must be a number of requests >= 1 (0: off), got {s.trace_rate}",
        ),
        (
            s.trace_count == -1 or s.trace_count >= 1,
            "trace_count",
            f"{{trace_count}} must be >= 1 (or -1: no limit), got {s.trace_count}",
        ),
        (s.trace_file is None or traced, "trace_file", "{trace_file} goes with {trace_rate}"),
        (s.trace_count == -1 or traced, "trace_count", "{trace_count} goes with {trace_rate}"),
        (
            not traced or s.scenario == "concurrency",
            "trace_rate",
            "{trace_rate} works with --concurrency for now, not an open loop",
        ),
        (
            not traced or (s.workers in (None, 1) and not s.ray),
            "trace_rate",
            "{trace_rate} joins traces to one process's sends: drop {workers} and {ray}",
        ),
    ]
    others = (
        (s.streaming, "streaming"),
        (s.validate, "validate"),
        (s.output_shared_memory_size is not None, "output_shared_memory_size"),
    )
    rules += [
        (not (traced and given), key, f"{{trace_rate}} does not work with {{{key}}} yet")
        for given, key in others
    ]
    return rules


def ray_rules(s: Traced) -> list[Rule]:
    """What ``--ray`` cannot carry to another host."""
    return [
        (
            not (s.ray and s.output_shared_memory_size is not None),
            "output_shared_memory_size",
            "{output_shared_memory_size} places each slot's outputs in this host's memory: not with {ray}",
        ),
    ]
