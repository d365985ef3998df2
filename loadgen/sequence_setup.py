"""A sequence run's plan, from the settings and the model's config: whether the model keeps
state (``sequence_batching``), which id type it takes, and what this release cannot yet do with
one, each refused in one line before any run is recorded."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loadgen.config import SweepSettings, spell_flag
from loadgen.config.request_rules import (
    DEFAULT_LENGTH,
    DEFAULT_SEQUENCES,
    DEFAULT_VARIATION_PCT,
    sequences_in_flight,
)
from loadgen.engine.sequences import SequencePlan
from loadgen.engine.workers import workers_for
from loadgen.errors import ConfigError
from loadgen.inputs.batches import NUMPY_SUFFIXES
from loadgen.inputs.json_data import stream_lengths

SEQUENCE_OPTIONS = ("sequence_length", "sequence_length_variation", "num_of_sequences", "sequence_id_range")
"""The sequence options that have no meaning unless given (None), for a model without state."""


DEFAULT_ID_END = 2**63
"""Ids below 2**63 by default: Triton takes a gRPC ``sequence_id`` as ``int64_param`` (or a
string), so the upper half of the uint64 range, which a second worker's slice of the whole
range would start in, is refused as "invalid value type"."""


def string_ids(config: Mapping[str, Any]) -> bool:
    """The model takes string correlation ids (its CORRID control input is TYPE_STRING)."""
    controls = (config.get("sequence_batching") or {}).get("control_input") or []
    return any(
        control.get("kind") == "CONTROL_SEQUENCE_CORRID" and control.get("data_type") == "TYPE_STRING"
        for entry in controls
        for control in entry.get("control") or []
    )


def data_streams(input_data: str) -> list[int] | None:
    """The lengths of the input file's sequence streams (perf_analyzer's list per sequence)."""
    path = Path(input_data)
    if input_data in ("random", "zero") or path.is_dir() or path.suffix in NUMPY_SUFFIXES:
        return None
    return stream_lengths(path)


def _streams(lengths: list[int] | None, requests: int) -> tuple[tuple[int, ...], ...]:
    """Each stream's request indices (consecutive in the flat list); one stream of every request
    for flat data."""
    if lengths is None:
        return (tuple(range(requests)),)
    starts = [sum(lengths[:k]) for k in range(len(lengths))]
    streams = [
        tuple(range(start, min(start + n, requests))) for start, n in zip(starts, lengths, strict=True)
    ]
    return tuple(stream for stream in streams if stream)


def sequence_plan(
    settings: SweepSettings, config: Mapping[str, Any], requests: int, lengths: list[int] | None = None
) -> SequencePlan | None:
    """The plan of a sequence model's run; None for a model without state (ConfigError if a
    sequence option or sequence data streams were given for it). ``lengths``: the input data's
    streams (:func:`data_streams`)."""
    given = [spell_flag(key) for key in SEQUENCE_OPTIONS if getattr(settings, key) is not None]
    given += [spell_flag("serial_sequences")] if settings.serial_sequences else []
    given += [f"--input-data with sequence streams ({settings.input_data})"] if lengths else []
    if "sequence_batching" not in config:
        if given:
            raise ConfigError(
                f"model {settings.model!r} has no sequence batching: {', '.join(given)} applies to "
                "stateful (sequence) models only"
            )
        return None
    not_yet = {
        "--streaming": settings.streaming,
        "--output-shared-memory-size": settings.output_shared_memory_size is not None,
        "--batch-size above 1 with sequence streams": lengths is not None and settings.batch_size > 1,
    }
    for what, asked in not_yet.items():
        if asked:
            raise ConfigError(
                f"model {settings.model!r} is a sequence model: {what} is not supported with one yet"
            )
    start, end = settings.sequence_id_range or (1, DEFAULT_ID_END)
    closed = settings.scenario == "concurrency"
    workers = workers_for(settings)
    in_flight = sequences_in_flight(settings.levels, closed, settings.num_of_sequences)
    if workers > 1 and (end - start) // workers < -(-in_flight // workers):
        raise ConfigError(
            f"--sequence-id-range holds {end - start} id(s): split between {workers} workers, each has too "
            f"few for its share of the {in_flight} sequences in flight; widen the range or use fewer workers"
        )
    return SequencePlan(
        streams=_streams(lengths, requests),
        length=settings.sequence_length or DEFAULT_LENGTH,
        variation_pct=(
            DEFAULT_VARIATION_PCT
            if settings.sequence_length_variation is None
            else settings.sequence_length_variation
        ),
        own_lengths=lengths is not None and settings.sequence_length is None,
        id_start=start,
        id_end=end,
        string_ids=string_ids(config),
        seed=settings.seed,
        active=settings.num_of_sequences or DEFAULT_SEQUENCES,
        serial=settings.serial_sequences,
    )
