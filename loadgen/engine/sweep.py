"""A sweep: one step per load level (or per probe of an SLO search), each handed on as soon as it ends.

A step the server went away in is handed on too (marked interrupted); then the sweep either
waits for the server (``--retry-unavailable``) and goes on with the next level, or ends with
ServerUnavailable, its finished steps already stored.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Sequence

from loadgen import intervals
from loadgen.config import SweepSettings
from loadgen.engine import heap
from loadgen.engine.cancelling import Canceller, canceller_for
from loadgen.engine.closed_loop import ClosedLoop
from loadgen.engine.open_loop import OpenLoop
from loadgen.engine.pooled import Pool, PooledLoad
from loadgen.engine.schedules import Schedule
from loadgen.engine.search import SearchResult, meets, search
from loadgen.engine.sequences import (
    OpenSequences,
    SequencePlan,
    Sequences,
    end_sequences,
    take_sequence_references,
)
from loadgen.engine.step import LoadGenerator, StepListener, kept_windows, measure_step
from loadgen.engine.worker_engine import WorkerSetup
from loadgen.engine.workers import WorkerPool, connections_per_worker, workers_for
from loadgen.errors import ConfigError, ServerUnavailable, UnknownModel
from loadgen.results import StatsSnapshot, StepResult
from loadgen.scrape.metrics import MetricsScraper
from loadgen.scrape.server_api import ServerAPI
from loadgen.shared_memory import SlotOutputs
from loadgen.tracing import SendLog, TraceSample, TraceSession
from loadgen.transports.base import InferRequestSpec, Transport
from loadgen.validation import (
    Reference,
    Validator,
    take_references,
    take_stream_references,
    tolerances_from,
)


def canceller_of(settings: SweepSettings) -> Canceller | None:
    """A step's canceller (a fresh one: each step spreads its share from its first request)."""
    return canceller_for(settings.cancel_after_ms, settings.cancel_after_responses, settings.cancel_share_pct)


RETRY_POLL_S = 0.5
"""How often a lost server is asked whether it is back (``--retry-unavailable``)."""


async def run_sweep(
    settings: SweepSettings,
    requests: Sequence[InferRequestSpec],
    transport: Transport,
    api: ServerAPI,
    on_step: Callable[[StepResult], None],
    *,
    listener: StepListener | None = None,
    on_search: Callable[[SearchResult], None] | None = None,
    references: Sequence[Reference] | None = None,
    sequence_plan: SequencePlan | None = None,
    slot_outputs: SlotOutputs | None = None,
    composing: Sequence[str] = (),
    tracing: TraceSession | None = None,
) -> list[StepResult]:
    """Measure the levels of ``settings`` in order (or search them for the latency limit);
    each step goes to ``on_step`` as soon as it ends, so an exception leaves earlier ones delivered.

    With ``settings.validate`` every answer is checked against ``references`` (one per request),
    or, if None, against the answers to each request sent alone before the first step."""
    intervals.preload()  # what every step's end needs, imported while no load runs
    prepared = [transport.prepare(spec) for spec in requests]  # serialized once, cycled by the load
    sequences = (
        None
        if sequence_plan is None
        else Sequences(sequence_plan, [transport.prepare_sequence(spec) for spec in requests])
    )
    validator = None
    if settings.validate and sequences is not None:
        references = await take_sequence_references(transport, sequences)
        validator = Validator(references, tolerances_from(settings.tolerances), names=sequences.name)
    elif settings.validate:
        if references is None:
            take = take_stream_references if settings.streaming else take_references
            references = await take(transport, prepared)
        validator = Validator(references, tolerances_from(settings.tolerances), streams=settings.streaming)
    metrics_url = settings.resolved_metrics_url
    scraper = (
        MetricsScraper(
            metrics_url,
            settings.measurement.metrics_interval_ms / 1000.0,
            models=frozenset({settings.model, *composing}),
            families=settings.metrics_families,
        )
        if metrics_url
        else None
    )

    async def stats() -> StatsSnapshot:
        return await api.stats_snapshot(settings.model, settings.model_version, composing)

    results: list[StepResult] = []
    by_slot = None
    if slot_outputs is not None:  # --output-shared-memory-size: each slot's own output region
        by_slot = [
            [transport.prepare(spec) for spec in slot_outputs.requests(s)] for s in range(slot_outputs.slots)
        ]
    workers = 1 if by_slot or tracing else workers_for(settings)
    tagged = None if tracing is None else [transport.prepare_tagged(spec) for spec in requests]
    trace_base = 0  # traced sends are numbered across the run: their ids never repeat
    pool: Pool | None = None
    if workers > 1 or settings.ray:
        setup = WorkerSetup(
            protocol=settings.protocol,
            url=settings.url,
            requests=tuple(requests),
            headers=settings.headers or None,
            tls=settings.tls,
            references=None if validator is None else tuple(validator.references),
            tolerances=settings.tolerances,
            grpc_client=settings.grpc_client,
            request_timeout_s=settings.request_timeout_s,
            streaming=settings.streaming,
            token_output=settings.token_output,
            cancel=(settings.cancel_after_ms, settings.cancel_after_responses, settings.cancel_share_pct),
            sequence_plan=sequence_plan,
            max_connections=connections_per_worker(settings, workers),
        )
        if settings.ray:
            from loadgen.distributed.ray_pool import RayPool  # it imports the engine: not at the top

            pool = RayPool(workers, setup, settings.ray)
        else:
            pool = WorkerPool(workers, setup)

    async def probe(level: float) -> StepResult:
        nonlocal trace_base
        index = len(results)
        load: LoadGenerator
        rate = None
        log = None if tracing is None else SendLog(tracing.tag, trace_base)
        untraced = None if tracing is None or log is None else functools.partial(tracing.pause, log)
        if pool is not None:
            await pool.measure_clocks()  # Ray: each actor's clock offset, before the step

        if settings.scenario == "request_rate":
            ramp = settings.ramp_from is not None
            schedule = Schedule(
                rate=settings.ramp_from if settings.ramp_from is not None else level,
                distribution=settings.distribution,
                seed=settings.seed + index,
                ramp_to=level if ramp else None,
                ramp_s=settings.ramp_s,
                intervals_us=settings.request_intervals_us,
            )
            if pool is not None:
                load = PooledLoad.open(pool, schedule, settings.max_in_flight, settings.pacing)
            else:
                load = OpenLoop(
                    transport,
                    prepared,
                    schedule,
                    max_in_flight=settings.max_in_flight,
                    pacing=settings.pacing,
                    validator=validator,
                    streaming=settings.streaming,
                    canceller=canceller_of(settings),
                    slot_requests=by_slot,
                    slot_outputs=slot_outputs,
                    sequences=OpenSequences(sequences) if sequences else None,
                )
            rate = schedule.label_rate
        elif pool is not None:
            load = PooledLoad.closed(pool, int(level))
        else:
            load = ClosedLoop(
                transport,
                prepared,
                int(level),
                validator=validator,
                streaming=settings.streaming,
                canceller=canceller_of(settings),
                sequences=sequences,
                slot_requests=by_slot,
                slot_outputs=slot_outputs,
                traced=None if tagged is None or log is None else (tagged, log),
            )
        step = await measure_step(
            index,
            load,
            settings.measurement,
            batch_size=settings.batch_size,
            stats=stats,
            scraper=scraper,
            listener=listener,
            request_rate=rate,
            untraced=untraced,
        )
        if tracing is not None and log is not None:
            trace_base = log.end  # whatever happened: an id is never sent twice in a run
            if step.interrupted is None:
                kept = kept_windows(settings.measurement, step.window_count, step.warmup_windows)
                step.traces = await _traces(tracing, log, kept)
        on_step(step)
        results.append(step)
        if listener:
            listener.step_done(step)
        if step.interrupted is not None:
            await wait_for_server(step.interrupted)
            if tracing is not None:
                await tracing.resume()  # a server started again traces nothing until told
        return step

    async def wait_for_server(reason: str) -> None:
        """``--retry-unavailable``: until the server and the model answer again, or the time is up
        (then, as without the option, the run fails with ServerUnavailable)."""
        wait_s = settings.retry_unavailable_s
        if listener:
            listener.server_lost(reason, wait_s)
        if wait_s <= 0:
            raise ServerUnavailable(reason)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            try:
                await api.check_ready()
                await stats()
                return
            except (ServerUnavailable, UnknownModel) as exc:
                if loop.time() >= deadline:
                    raise ServerUnavailable(f"{reason}; not back within {wait_s:g} s: {exc}") from None
            await asyncio.sleep(RETRY_POLL_S)

    async def measured(level: float) -> StepResult:
        """A level's step; in an SLO search, measured again if the server went away during it."""
        step = await probe(level)
        while step.interrupted is not None and searching:
            step = await probe(level)
        return step

    limit = settings.latency_limit
    searching = settings.search and limit is not None

    async def run_levels() -> None:
        if searching and limit is not None:
            outcome = await search(
                settings.levels, limit, measured, integer=settings.scenario == "concurrency"
            )
            if on_search is not None:
                on_search(outcome)
        else:
            for level in settings.levels:
                step = await probe(level)
                if limit is not None and step.interrupted is None and not meets(limit, step):
                    break  # as perf_analyzer's --latency-threshold: higher loads would only miss more

    try:
        if pool is not None:
            await pool.start()
        with heap.frozen():  # no collection walks the whole heap while the load runs
            await run_levels()
    finally:
        if pool is not None:
            await pool.close()
        if scraper:
            await scraper.close()
        if sequences is not None:
            await end_sequences(transport, sequences)
    return results


async def _traces(tracing: TraceSession, log: SendLog, kept: int) -> list[TraceSample]:
    """The step's joined traces, of the ``kept`` windows its numbers come from; none (said on
    stderr) when they cannot be read: the step itself is measured and is stored regardless."""
    log.keep_last(kept)
    try:
        return await tracing.collect(log)
    except (ServerUnavailable, ConfigError) as exc:
        print(f"loadgen: warning: this step's traces are lost: {exc}", file=sys.stderr)
        return []
