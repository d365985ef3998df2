"""The one way to run sweeps: one model, or several loaded at the same time.

The command line, plans and the scheduler all come here, so "several models" means the
same everywhere (each its own run, all measured at once, tied by a ``group`` label),
progress and the live exporter are wired in one place, and wrong answers and failed
requests become the same failure everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import uuid
from collections.abc import Sequence

from rich.console import Console

from loadgen.config import SweepSettings
from loadgen.config.scenarios import words
from loadgen.engine.step import Listeners, StepListener
from loadgen.errors import EXIT_ERRORS, EXIT_FAILED, EXIT_MISMATCH, EXIT_OK, ConfigError
from loadgen.exporter import SweepExporter
from loadgen.results import RunStatus, StepResult
from loadgen.runner import Prepared, SweepOutcome, execute_sweep, prepare
from loadgen.scrape.server_api import ServerAPI
from loadgen.storage import RunStore
from loadgen.tallies import ValidationTally


def grouped(sweeps: Sequence[SweepSettings]) -> list[SweepSettings]:
    """Several models measured together carry ``group`` (one id) and ``models`` labels."""
    if len(sweeps) < 2:
        return list(sweeps)
    group = uuid.uuid4().hex[:12]
    models = ",".join(s.model for s in sweeps)
    return [dataclasses.replace(s, labels={**s.labels, "group": group, "models": models}) for s in sweeps]


def check_together(sweeps: Sequence[SweepSettings]) -> None:
    """What several models at once cannot do; raised before anything starts."""
    if len({s.model for s in sweeps}) != len(sweeps):
        raise ConfigError("each model is measured once: a model is named twice")
    if len({s.repeats for s in sweeps}) > 1:
        raise ConfigError("--repeats is one number for every model measured at once")
    if len(sweeps) > 1 and any(s.search for s in sweeps):
        raise ConfigError("--search takes one model at a time")


async def run_sweeps(
    sweeps: Sequence[SweepSettings],
    store: RunStore,
    *,
    console: Console | None = None,
    exporter: SweepExporter | None = None,
) -> list[SweepOutcome]:
    """Run and store each sweep, all at the same time; outcomes in the order given.

    With several, every model is checked on its server before any load starts, so a typo
    never leaves a half-started group. ``console``: live progress there (a bar for one
    model, a line per step for several); None is quiet. ``exporter``: each model's windows
    are served live, one series per model.
    """
    check_together(sweeps)
    prepared: list[Prepared | None] = [None] * len(sweeps)
    if len(sweeps) > 1:
        prepared = [await _prepare_alone(settings) for settings in sweeps]
    with contextlib.ExitStack() as stack:
        runs = []
        for settings, ready in zip(sweeps, prepared, strict=True):
            progress: StepListener | None = None
            if console is not None and len(sweeps) == 1:
                from loadgen.console.progress import SweepProgress

                progress = stack.enter_context(SweepProgress(settings, console))
            elif console is not None:
                from loadgen.console.progress import StepLines

                progress = StepLines(settings.model, console, settings.scenario)
            feed = None if exporter is None else exporter.feed(settings)
            runs.append(
                execute_sweep(
                    settings,
                    store,
                    listener=Listeners(progress, feed),
                    on_run_created=None if feed is None else feed.run_created,
                    prepared=ready,
                )
            )
        return list(await asyncio.gather(*runs))


def repeated(sweeps: Sequence[SweepSettings], index: int, group: str) -> list[SweepSettings]:
    """Repeat ``index`` (1-based) of ``--repeats``: every run carries the ``repeats`` group and its
    place in it."""
    return [
        dataclasses.replace(s, labels={**s.labels, "repeats": group, "repeat": f"{index}/{s.repeats}"})
        for s in sweeps
    ]


@dataclasses.dataclass(frozen=True)
class Repeats:
    """The rounds of ``--repeats`` (one round without it), each the outcomes of :func:`run_sweeps`."""

    group: str | None
    """The ``repeats`` label every run carries (None: one round, no label)."""
    rounds: list[list[SweepOutcome]]

    @property
    def outcomes(self) -> list[SweepOutcome]:
        return [outcome for round_ in self.rounds for outcome in round_]


async def run_repeats(
    sweeps: Sequence[SweepSettings],
    store: RunStore,
    *,
    console: Console | None = None,
    exporter: SweepExporter | None = None,
) -> Repeats:
    """:func:`run_sweeps` ``--repeats`` times, one round after another; a round whose runs did not
    all complete ends the repeats (the rounds done are kept)."""
    count = sweeps[0].repeats if sweeps else 1
    if count == 1:
        return Repeats(None, [await run_sweeps(sweeps, store, console=console, exporter=exporter)])
    group = uuid.uuid4().hex[:12]
    rounds: list[list[SweepOutcome]] = []
    for index in range(1, count + 1):
        if console is not None:
            console.print(f"repeat {index} of {count} (group:{group})", highlight=False)
        outcomes = await run_sweeps(repeated(sweeps, index, group), store, console=console, exporter=exporter)
        rounds.append(outcomes)
        if any(o.status is not RunStatus.COMPLETED for o in outcomes):
            if console is not None and index < count:
                console.print(f"repeats stopped after {index} of {count}: a run did not complete")
            break
    return Repeats(group, rounds)


async def _prepare_alone(settings: SweepSettings) -> Prepared:
    api = ServerAPI(settings.url, settings.protocol, settings.headers or None, tls=settings.tls)
    try:
        return await prepare(settings, api)
    finally:
        await api.close()


def wrong_answers(outcome: SweepOutcome) -> str | None:
    """What ``--validate`` found wrong in a run, in one sentence; None when every answer matched."""
    total = ValidationTally.merged(s.validation for s in outcome.steps)
    if total is None or not total.mismatched:
        return None
    return (
        f"{total.mismatched} of {total.checked} answers differ from the reference beyond the tolerance "
        f"({total.swapped} equal another request's reference: swapped/stale); first: {total.example}"
    )


def failed_requests(outcome: SweepOutcome, max_error_rate: float | None) -> str | None:
    """Why a run's failed requests fail the command (``--max-error-rate``), in one sentence; None
    within bounds. Without a rate only a run in which every request of every step failed does:
    its numbers describe failures, not a served load."""
    steps = [s for s in outcome.steps if s.request_count + s.error_count > 0]
    if not steps:
        return None
    if max_error_rate is None:
        if all(s.request_count == 0 for s in steps):
            top = max(steps[-1].errors.items(), key=lambda item: item[1])[0]
            return f"every request of its {len(steps)} step(s) failed (last step: {top})"
        return None
    over = [s for s in steps if 100.0 * s.error_count / (s.request_count + s.error_count) > max_error_rate]
    if not over:
        return None
    shown = "; ".join(
        f"{_level(s)}: {s.error_count / (s.request_count + s.error_count):.1%} failed" for s in over[:3]
    )
    return f"{len(over)} step(s) above --max-error-rate {max_error_rate:g}%: {shown}"


def _kept(steps: Sequence[StepResult]) -> str:
    cut = sum(1 for s in steps if s.interrupted is not None)
    finished = f"{len(steps) - cut} finished step(s)"
    return f"{finished} and {cut} interrupted one(s)" if cut else finished


def _level(step: StepResult) -> str:
    said = words("request_rate" if step.request_rate is not None else "concurrency")
    return said.describe(said.of(step.concurrency, step.request_rate))


def exit_status(outcomes: Sequence[SweepOutcome], sweeps: Sequence[SweepSettings]) -> int:
    """The command's exit code: a failed run first (1), then wrong answers (3), then failed requests
    beyond ``--max-error-rate`` (4); each says why on stderr."""
    for outcome in outcomes:
        for step in outcome.steps:
            if step.interrupted is not None:
                print(
                    f"loadgen: warning: run {outcome.run_id}, {_level(step)} was cut short, the server "
                    f"went away ({step.interrupted}): stored marked, compare leaves it out",
                    file=sys.stderr,
                )
    failed = [o for o in outcomes if o.status is RunStatus.FAILED]
    for outcome in failed:
        print(
            f"loadgen: run {outcome.run_id} failed: {outcome.error} ({_kept(outcome.steps)} kept)",
            file=sys.stderr,
        )
    if failed:
        return EXIT_FAILED
    code = EXIT_OK
    for outcome in outcomes:
        if (wrong := wrong_answers(outcome)) is not None:
            print(f"loadgen: run {outcome.run_id}: {wrong}", file=sys.stderr)
            code = EXIT_MISMATCH
    for outcome, settings in zip(outcomes, sweeps, strict=True):
        if (why := failed_requests(outcome, settings.max_error_rate)) is not None:
            print(f"loadgen: run {outcome.run_id}: {why}", file=sys.stderr)
            code = code or EXIT_ERRORS
    return code
