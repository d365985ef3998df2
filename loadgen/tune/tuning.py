"""One tune: each candidate loaded live, measured as a run of its own (labels ``tune``,
``tune_config``), scored from what was stored; resumed from the database, never from files.

A run is the one way a candidate is measured (:func:`loadgen.launch.run_sweeps`), so compare,
table and report read a tune's runs like any other; the tune itself is no more than its labels.
"""

from __future__ import annotations

import dataclasses
import sys
import uuid
from dataclasses import dataclass
from typing import Literal

from rich.console import Console

from analysis.tune_result import CONFIG_LABEL, TUNE_LABEL, config_result, finished_configs
from loadgen.config import SweepSettings
from loadgen.launch import run_sweeps
from loadgen.results import RunStatus
from loadgen.scrape.server_api import ServerAPI
from loadgen.storage import RunStore
from loadgen.tune.live_config import CandidateRefused, LiveConfig
from loadgen.tune.search import Tried, grid, hill_climb
from loadgen.tune.space import Candidate, TuneSpace


@dataclass(frozen=True)
class TuneSettings:
    sweep: SweepSettings
    """How each candidate is measured (its levels, the SLO as ``latency_limit``)."""
    instances: tuple[int, ...] | None = None
    max_batch_sizes: tuple[int, ...] | None = None
    queue_delays: tuple[int | None, ...] | None = None
    """Each axis not given holds the served config's value."""
    search: str = "grid"
    tune_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:12])
    resume: bool = False
    """Candidates whose runs completed under ``tune_id`` are read back, not measured again."""


@dataclass(frozen=True)
class Attempt:
    candidate: Candidate
    kind: Literal["measured", "resumed", "refused", "skipped"]
    run_id: int | None = None
    why: str = ""
    """refused, skipped: the reason."""


async def run_tune(tune: TuneSettings, store: RunStore, *, console: Console | None = None) -> list[Attempt]:
    """Every candidate the search picks, in order; the original config is back when this returns
    or raises (Ctrl-C included)."""
    sweep = tune.sweep
    api = ServerAPI(sweep.url, sweep.protocol, dict(sweep.headers), sweep.tls)
    attempts: list[Attempt] = []
    live = LiveConfig(api, sweep.model)
    try:
        await _search(tune, store, live, attempts, console)
    except BaseException:
        if live.restored:
            print(
                f"loadgen: tune {tune.tune_id}: {sweep.model} serves its original config again",
                file=sys.stderr,
            )
        raise
    finally:
        await api.close()
    return attempts


async def _search(
    tune: TuneSettings, store: RunStore, live: LiveConfig, attempts: list[Attempt], console: Console | None
) -> None:
    sweep = tune.sweep
    done = finished_configs(store, tune.tune_id) if tune.resume else {}

    def say(text: str) -> None:
        if console is not None:
            console.print(f"tune {tune.tune_id}: {text}", highlight=False)

    async with live:
        space = TuneSpace.around(live.served, tune.instances, tune.max_batch_sizes, tune.queue_delays)
        total = len(space.candidates())

        async def evaluate(candidate: Candidate) -> Tried:
            where = f"[{len(attempts) + 1}/{total}] {candidate.key}"
            if (result := done.get(candidate.key)) is not None:
                attempts.append(Attempt(candidate, "resumed", result.run_id))
                say(f"{where}: measured before (run {result.run_id})")
                return Tried(result.best, result.best is None)
            try:
                await live.apply(candidate)
            except CandidateRefused as exc:
                attempts.append(Attempt(candidate, "refused", why=str(exc)))
                say(f"{where}: refused, the model loaded before still serves: {exc}")
                return Tried(None, missed_slo=False)
            say(f"{where}: loaded, measuring")
            labels = {**sweep.labels, TUNE_LABEL: tune.tune_id, CONFIG_LABEL: candidate.key}
            (outcome,) = await run_sweeps([dataclasses.replace(sweep, labels=labels)], store, console=console)
            result = config_result(store, store.get_run(outcome.run_id))
            attempts.append(Attempt(candidate, "measured", outcome.run_id))
            best = result.best
            if outcome.status is not RunStatus.COMPLETED:
                say(f"{where}: run {outcome.run_id} {outcome.status}: {outcome.error}")
            elif best is None:
                say(f"{where}: misses {sweep.latency_limit} at every load (run {outcome.run_id})")
            else:
                say(
                    f"{where}: {best.throughput:.1f} infer/s at load {best.level:g}, "
                    f"{best.latency_ms:.2f} ms (run {outcome.run_id})"
                )
            return Tried(best, missed_slo=best is None and outcome.status is RunStatus.COMPLETED)

        def skip(candidate: Candidate, why: str) -> None:
            attempts.append(Attempt(candidate, "skipped", why=why))
            say(f"{candidate.key}: skipped, {why}")

        if tune.search == "quick":
            await hill_climb(space, evaluate)
        else:
            await grid(space, evaluate, skip)
