"""A sequence run's plan, from the settings and the model's config: whether the model keeps
state (``sequence_batching``), which id type it takes, and what this release cannot yet do with
one, each refused in one line before any run is recorded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loadgen.config import SweepSettings
from loadgen.config.sequences import DEFAULT_LENGTH, DEFAULT_VARIATION_PCT
from loadgen.engine.sequences import SequencePlan
from loadgen.errors import ConfigError

SEQUENCE_OPTIONS = {
    "sequence_length": "--sequence-length",
    "sequence_length_variation": "--sequence-length-variation",
    "num_of_sequences": "--num-of-sequences",
    "sequence_id_range": "--sequence-id-range",
}


def string_ids(config: Mapping[str, Any]) -> bool:
    """The model takes string correlation ids (its CORRID control input is TYPE_STRING)."""
    controls = (config.get("sequence_batching") or {}).get("control_input") or []
    return any(
        control.get("kind") == "CONTROL_SEQUENCE_CORRID" and control.get("data_type") == "TYPE_STRING"
        for entry in controls
        for control in entry.get("control") or []
    )


def sequence_plan(settings: SweepSettings, config: Mapping[str, Any], requests: int) -> SequencePlan | None:
    """The plan of a sequence model's run; None for a model without state (ConfigError if a
    sequence option was given for it)."""
    given = [flag for key, flag in SEQUENCE_OPTIONS.items() if getattr(settings, key) is not None]
    given += ["--serial-sequences"] if settings.serial_sequences else []
    if "sequence_batching" not in config:
        if given:
            raise ConfigError(
                f"model {settings.model!r} has no sequence batching: {', '.join(given)} applies to "
                "stateful (sequence) models only"
            )
        return None
    not_yet = {
        "--streaming": settings.streaming,
        "--validate": settings.validate,
        "--workers above 1": (settings.workers or 1) > 1,
        "an open-loop load (--request-rate, --ramp, --request-intervals)": settings.scenario != "concurrency",
    }
    for what, asked in not_yet.items():
        if asked:
            raise ConfigError(
                f"model {settings.model!r} is a sequence model: {what} is not supported with one yet"
            )
    start, end = settings.sequence_id_range or (1, 2**64)
    return SequencePlan(
        streams=(tuple(range(requests)),),
        length=settings.sequence_length or DEFAULT_LENGTH,
        variation_pct=(
            DEFAULT_VARIATION_PCT
            if settings.sequence_length_variation is None
            else settings.sequence_length_variation
        ),
        own_lengths=False,
        id_start=start,
        id_end=end,
        string_ids=string_ids(config),
        seed=settings.seed,
    )
