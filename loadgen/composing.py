"""Which models a composite model runs, so that each one's ``/stats`` can be kept beside its own.

An ensemble says so in its config (``ensemble_scheduling.step``; a step may itself be an ensemble,
followed down). A BLS model calls other models from its code, which Triton cannot see: the user
names them (``--composing-models``, perf_analyzer's ``--bls-composing-models``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from loadgen.errors import ConfigError

MAX_DEPTH = 8
"""Nested ensembles followed this deep at most (Triton refuses cycles, this bounds a bad config)."""


class ConfigSource(Protocol):
    async def model_config(self, model: str, version: str = "") -> dict[str, Any]: ...


def ensemble_steps(config: dict[str, Any]) -> list[str]:
    """The models an ensemble's steps call, in step order, each once (empty: not an ensemble)."""
    scheduling = config.get("ensemble_scheduling")
    steps = scheduling.get("step", []) if isinstance(scheduling, dict) else []
    names = [str(step["model_name"]) for step in steps if isinstance(step, dict) and step.get("model_name")]
    return list(dict.fromkeys(names))


def ensemble_versions(config: dict[str, Any]) -> dict[str, str]:
    """The version each of an ensemble's steps asks for ("-1": the latest), by model name."""
    scheduling = config.get("ensemble_scheduling")
    steps = scheduling.get("step", []) if isinstance(scheduling, dict) else []
    return {
        str(step["model_name"]): str(step.get("model_version", -1))
        for step in steps
        if isinstance(step, dict) and step.get("model_name")
    }


async def composing_models(
    api: ConfigSource, model: str, config: dict[str, Any], named: Sequence[str]
) -> tuple[str, ...]:
    """``model``'s composing models: its ensemble steps (a nested ensemble's steps in its place, as
    its own time would count theirs twice), then ``named``.

    Each named model must be on the server (:class:`~loadgen.errors.UnknownModel` names the ones it
    has otherwise); naming the measured model itself is refused in one line.
    """
    if model in named:
        raise ConfigError(
            f"--composing-models names {model!r}, the model being measured: name the models it calls"
        )
    found: list[str] = []

    async def follow(config: dict[str, Any], depth: int) -> None:
        for name in ensemble_steps(config):
            if name in found or name == model:
                continue
            inner = await api.model_config(name)
            if not ensemble_steps(inner):
                found.append(name)
            elif depth < MAX_DEPTH:  # a nested ensemble's time is its steps': they stand for it
                await follow(inner, depth + 1)

    await follow(config, 1)
    for name in named:
        if name not in found:
            await api.model_config(name)  # an unknown name fails here, with the server's models
            found.append(name)
    return tuple(found)
