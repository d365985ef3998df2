"""Each scenario's words, once: tables, plots, progress, messages and comparisons read them here.

The stored value (``run.scenario``) is the key; nothing downstream guesses the scenario
from its steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadgen.config.settings import Scenario


@dataclass(frozen=True)
class ScenarioWords:
    scenario: Scenario
    level: str
    """A level in a sentence: ``concurrency 4``, ``request rate 100/s``."""
    short: str
    """On a progress bar: ``concurrency``, ``rate``."""
    unit: str
    """After a level's number: nothing for concurrency, ``/s`` for a rate."""
    column: str
    """The level's table column."""
    title: str
    """A heading."""
    levels: str
    """Several levels, in a sentence."""

    def describe(self, level: float) -> str:
        """``concurrency 4``, ``request rate 100/s``."""
        return f"{self.level} {level:g}{self.unit}"

    def shown(self, level: float) -> str:
        """``concurrency 4``, ``rate 100/s``: where space is short."""
        return f"{self.short} {level:g}{self.unit}"

    def of(self, concurrency: int, request_rate: float | None) -> float:
        """A step's level in this scenario."""
        return request_rate if self.scenario == "request_rate" and request_rate is not None else concurrency


SCENARIOS: dict[str, ScenarioWords] = {
    "concurrency": ScenarioWords(
        scenario="concurrency",
        level="concurrency",
        short="concurrency",
        unit="",
        column="Concurrent requests",
        title="Concurrency",
        levels="concurrency levels",
    ),
    "request_rate": ScenarioWords(
        scenario="request_rate",
        level="request rate",
        short="rate",
        unit="/s",
        column="Request rate (req/s)",
        title="Request rate",
        levels="request rates",
    ),
}


def words(scenario: str) -> ScenarioWords:
    """The words of a stored scenario (closed loop for anything unknown)."""
    return SCENARIOS.get(scenario, SCENARIOS["concurrency"])
