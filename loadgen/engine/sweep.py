"""A sweep: one step per load level (or per probe of an SLO search), each handed on as soon as it ends."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from loadgen.config import SweepSettings
from loadgen.engine.closed_loop import ClosedLoop
from loadgen.engine.open_loop import OpenLoop
from loadgen.engine.schedules import Schedule
from loadgen.engine.search import SearchResult, meets, search
from loadgen.engine.step import LoadGenerator, StepListener, measure_step
from loadgen.engine.workers import PooledLoad, WorkerPool, WorkerSetup, default_workers
from loadgen.results import ModelStats, StepResult
from loadgen.scrape.metrics import MetricsScraper
from loadgen.scrape.server_api import ServerAPI
from loadgen.transports.base import InferRequestSpec, Transport
from loadgen.validation import Reference, Validator, take_references, tolerances_from


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
) -> list[StepResult]:
    """Measure the levels of ``settings`` in order (or search them for the latency limit);
    each step goes to ``on_step`` as soon as it ends, so an exception leaves earlier ones delivered.

    With ``settings.validate`` every answer is checked against ``references`` (one per request),
    or, if None, against the answers to each request sent alone before the first step."""
    prepared = [transport.prepare(spec) for spec in requests]  # serialized once, cycled by the load
    validator = None
    if settings.validate:
        if references is None:
            references = await take_references(transport, prepared)
        validator = Validator(references, tolerances_from(settings.tolerances))
    metrics_url = settings.resolved_metrics_url
    scraper = (
        MetricsScraper(
            metrics_url,
            settings.measurement.metrics_interval_ms / 1000.0,
            models=frozenset({settings.model}),
            families=settings.metrics_families,
        )
        if metrics_url
        else None
    )

    async def stats() -> ModelStats:
        return await api.model_stats(settings.model, settings.model_version)

    results: list[StepResult] = []
    open_loop = settings.scenario == "request_rate"
    workers = settings.workers or default_workers(settings.levels, open_loop)
    pool = None
    if workers > 1:
        pool = WorkerPool(
            workers,
            WorkerSetup(
                protocol=settings.protocol,
                url=settings.url,
                requests=tuple(requests),
                headers=settings.headers or None,
                tls=settings.tls,
                references=None if validator is None else tuple(validator.references),
                tolerances=settings.tolerances,
                grpc_client=settings.grpc_client,
                request_timeout_s=settings.request_timeout_s,
            ),
        )

    async def probe(level: float) -> StepResult:
        index = len(results)
        load: LoadGenerator
        rate = None
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
                load = PooledLoad.open(pool, schedule, settings.max_in_flight)
            else:
                load = OpenLoop(
                    transport, prepared, schedule, max_in_flight=settings.max_in_flight, validator=validator
                )
            rate = schedule.label_rate
        elif pool is not None:
            load = PooledLoad.closed(pool, int(level))
        else:
            load = ClosedLoop(transport, prepared, int(level), validator=validator)
        step = await measure_step(
            index,
            load,
            settings.measurement,
            batch_size=settings.batch_size,
            stats=stats,
            scraper=scraper,
            listener=listener,
            request_rate=rate,
        )
        on_step(step)
        results.append(step)
        if listener:
            listener.step_done(step)
        return step

    limit = settings.latency_limit
    try:
        if pool is not None:
            await pool.start()
        if settings.search and limit is not None:
            outcome = await search(settings.levels, limit, probe, integer=settings.scenario == "concurrency")
            if on_search is not None:
                on_search(outcome)
        else:
            for level in settings.levels:
                step = await probe(level)
                if limit is not None and not meets(limit, step):
                    break  # as perf_analyzer's --latency-threshold: higher loads would only miss more
    finally:
        if pool is not None:
            await pool.close()
        if scraper:
            await scraper.close()
    return results
