"""What a validated plan is: jobs of models measured together, baselines and thresholds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from loadgen.config import SweepSettings
from loadgen.errors import ConfigError

if TYPE_CHECKING:  # analysis imports pandas: loaded when a plan runs, not when it is read
    from analysis.compare import Thresholds

BaselineKind = Literal["previous", "run", "label"]
RESERVED_LABELS = ("plan", "job", "matrix")
"""Labels a plan sets on each run itself: ``plan=<name>``, ``job=<job>`` and, for a job expanded
from a matrix, ``matrix=<the job's name>`` (its runs are read side by side)."""


@dataclass(frozen=True)
class Baseline:
    """What a job's new run is compared with."""

    kind: BaselineKind = "previous"
    run_id: int | None = None
    """``run``: this stored run."""
    labels: tuple[tuple[str, str], ...] = ()
    """``label``: the latest completed run of the same model carrying all these labels."""
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        if self.kind == "run":
            return f"run {self.run_id}"
        if self.kind == "label":
            return "label " + ",".join(f"{k}={v}" for k, v in self.labels)
        return "previous"


@dataclass(frozen=True)
class Job:
    """One job of a plan: its models measured at the same time, each compared with its baseline."""

    name: str
    line: int
    sweeps: tuple[SweepSettings, ...]
    """One per model, in the plan's order; labels include ``plan`` and ``job`` (and ``group``
    when there are several, added when they run)."""
    thresholds: Thresholds
    baseline: Baseline
    cron: str | None
    """When ``loadgen schedule`` runs the job: a cron expression (5 fields, or 6 with leading
    seconds); None: run by ``plan run`` only. (The *send schedule* is the open loop's.)"""

    @property
    def matrix(self) -> str | None:
        """The name of the job this one was expanded from (its ``matrix`` label), if any."""
        return self.sweeps[0].labels.get("matrix")

    @property
    def names(self) -> tuple[str, ...]:
        """What ``--job`` may call it: its own name and, from a matrix, the matrix job's."""
        return (self.name,) if self.matrix is None else (self.name, self.matrix)


@dataclass(frozen=True)
class Plan:
    name: str
    path: Path
    jobs: tuple[Job, ...]

    def select(self, names: Sequence[str]) -> tuple[Job, ...]:
        """The named jobs in plan order (all for no names; a matrix job's name: every combination);
        ConfigError for an unknown name."""
        known = {name for job in self.jobs for name in job.names}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(
                f"plan {self.name!r} has no job {', '.join(map(repr, unknown))}: "
                f"its jobs are {', '.join(dict.fromkeys(job.matrix or job.name for job in self.jobs))}"
            )
        return tuple(job for job in self.jobs if not names or set(job.names) & set(names))
