"""A sweep end to end: ask the server, record the run, measure, store each step, close the run.

This is the only place where the engine meets storage; it decides a run's final
status so that every way a run can end leaves the finished steps and a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadgen import __version__, intervals
from loadgen.composing import composing_models
from loadgen.config import SweepSettings
from loadgen.descriptors import ensure_descriptors
from loadgen.distributed.connect import check_reachable
from loadgen.engine.search import SearchResult
from loadgen.engine.sequences import SequencePlan
from loadgen.engine.step import StepListener
from loadgen.engine.sweep import run_sweep
from loadgen.engine.workers import workers_for
from loadgen.errors import ConfigError, ServerUnavailable, WorkerFailed
from loadgen.inputs import build_requests, read_references
from loadgen.results import RunInfo, RunStatus, StepResult
from loadgen.scrape.server_api import ServerAPI
from loadgen.sequence_setup import data_streams, sequence_plan
from loadgen.shared_memory import shared_inputs, shared_outputs
from loadgen.storage import RunStore
from loadgen.tracing import TraceSession
from loadgen.transports import make_transport
from loadgen.transports.base import InferRequestSpec
from loadgen.validation import Reference, ReferenceFailed, flatten_stream

VALIDATE_SAMPLES = 16
"""Distinct random inputs a validating run cycles through, so that a swapped answer is recognizable."""


@dataclass
class SweepOutcome:
    """How one run ended: its steps (kept whatever happened) and, for a failed run, why."""

    model: str
    run_id: int
    status: RunStatus
    steps: list[StepResult] = field(default_factory=list)
    error: str | None = None
    search: SearchResult | None = None


def host_info() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "loadgen": __version__,
    }


Prepared = tuple[RunInfo, list[InferRequestSpec], Sequence[Reference] | None, SequencePlan | None]
"""What a run needs from the server before it is recorded: its info, the requests, the references
and, for a sequence model, its sequences' plan."""


def is_decoupled(config: dict[str, Any]) -> bool:
    """``model_transaction_policy { decoupled: true }``: Triton refuses unary calls to it."""
    policy = config.get("model_transaction_policy")
    return isinstance(policy, dict) and policy.get("decoupled") is True


async def prepare(settings: SweepSettings, api: ServerAPI) -> Prepared:
    """Check the server and model, build the requests (and the references of the input file's
    ``validation_data`` when validating); raises before any run is recorded."""
    if settings.ray:
        check_reachable(settings.ray)  # Ray missing, or no cluster there: said before anything runs
    await api.check_ready()
    server = await api.server_metadata()
    metadata = await api.model_metadata(settings.model, settings.model_version)
    config = await api.model_config(settings.model, settings.model_version)
    if is_decoupled(config) and not settings.streaming:
        raise ConfigError(
            f"model {settings.model!r} is decoupled (it streams zero or more responses per request): "
            "unary inference cannot serve it: add --streaming"
        )
    requests = build_requests(
        metadata,
        config,
        batch_size=settings.batch_size,
        input_data=settings.input_data,
        seed=settings.seed,
        shapes=settings.shapes,
        model_version=settings.model_version,
        generated_samples=VALIDATE_SAMPLES if settings.validate else 1,
    )
    if settings.request_parameters:
        parameters = tuple(settings.request_parameters.items())
        requests = [replace(spec, parameters=parameters) for spec in requests]
    info = RunInfo(
        settings=settings.to_dict(),
        model=settings.model,
        model_version=settings.model_version or ",".join(metadata.get("versions", [])),
        scenario=settings.scenario,
        server_url=settings.url,
        model_config=config,
        model_metadata=metadata,
        server_metadata=server,
        host=host_info(),
        started_at=datetime.now(UTC),
        labels=dict(settings.labels),
        composing_models=await composing_models(api, settings.model, config, settings.composing_models),
    )
    references = None
    if settings.validate and settings.input_data not in ("random", "zero"):
        references = read_references(Path(settings.input_data), metadata, config, settings.batch_size)
        if references is not None and settings.streaming:
            if is_decoupled(config):
                raise ConfigError(
                    f"{settings.input_data}: expected outputs are one answer per request, and model "
                    f"{settings.model!r} streams: --validate takes each stream's reference at concurrency 1 "
                    "when the input data has no expected outputs"
                )
            references = [flatten_stream([reference]) for reference in references]  # one response each
    plan = sequence_plan(settings, config, len(requests), data_streams(settings.input_data))
    return info, requests, references, plan


async def _traced(
    settings: SweepSettings, api: ServerAPI, plan: SequencePlan | None, held: contextlib.AsyncExitStack
) -> TraceSession | None:
    """``--trace-rate``: tracing on for the model, and put back as it was however the sweep ends."""
    if not settings.trace_rate:
        return None
    if plan is not None:
        raise ConfigError("--trace-rate with a sequence model: not supported yet")
    tracing = TraceSession(
        api, settings.model, settings.trace_rate, settings.trace_file, settings.trace_count
    )
    await tracing.start()

    async def restore() -> None:
        try:
            await tracing.restore()
        except (ServerUnavailable, ConfigError) as exc:  # a server gone took its settings with it
            print(
                f"loadgen: warning: trace settings of {settings.model!r} not restored: {exc}", file=sys.stderr
            )

    held.push_async_callback(restore)
    return tracing


def _traced_loss(tracing: TraceSession | None) -> str:
    """What to know when a traced sweep loses its server: Triton 2.51 crashes under heavy tracing."""
    if tracing is None:
        return ""
    return (
        f"; it was tracing one request in {tracing.rate}: Triton 2.51 can crash (SIGSEGV) tracing many "
        "requests a second, see its log; a larger --trace-rate makes that rarer"
    )


async def execute_sweep(
    settings: SweepSettings,
    store: RunStore,
    *,
    listener: StepListener | None = None,
    on_run_created: Callable[[int, RunInfo], None] | None = None,
    prepared: Prepared | None = None,
) -> SweepOutcome:
    """Run and store a sweep. Cancellation marks the run interrupted and propagates.

    ``settings.headers`` (auth tokens and the like) go on every request but never into
    storage: the run records only their names.
    ``on_run_created(run_id, info)`` is called once the run is recorded (the live exporter's run id).
    ``prepared``: :func:`prepare`'s result when the caller checked the server already (several
    models are all checked before any starts); the run still starts now.
    """
    headers = settings.headers or None
    ensure_descriptors(settings, workers_for(settings))
    intervals.preload()  # before the run exists: its first step then starts as soon as the run does
    api = ServerAPI(settings.url, settings.protocol, headers, tls=settings.tls)
    transport = make_transport(
        settings.protocol,
        settings.url,
        headers,
        tls=settings.tls,
        grpc_implementation=settings.grpc_client,
        request_timeout_s=settings.request_timeout_s,
        streaming=settings.streaming,
        token_output=settings.token_output,
        max_connections=settings.max_connections,
    )
    held = contextlib.AsyncExitStack()  # what the sweep holds on the server (shared memory)
    try:
        if prepared is None:
            info, requests, references, plan = await prepare(settings, api)
        else:
            info, requests, references, plan = prepared
            info = replace(info, started_at=datetime.now(UTC))
        slot_outputs = None
        if settings.shared_memory == "system":
            requests = await held.enter_async_context(shared_inputs(api, requests))
        if settings.output_shared_memory_size:
            closed = settings.scenario == "concurrency"
            slots = int(max(settings.levels)) if closed else settings.max_in_flight
            size = settings.output_shared_memory_size
            slot_outputs = await held.enter_async_context(shared_outputs(api, requests, slots, size))
        tracing = await _traced(settings, api, plan, held)
        run_id = store.create_run(info)
        if on_run_created is not None:
            on_run_created(run_id, info)
        outcome = SweepOutcome(settings.model, run_id, RunStatus.RUNNING)

        def on_search(result: SearchResult) -> None:
            outcome.search = result

        def on_step(step: StepResult) -> None:
            store.add_step(run_id, step)
            outcome.steps.append(step)

        try:
            await run_sweep(
                settings,
                requests,
                transport,
                api,
                on_step,
                listener=listener,
                on_search=on_search,
                references=references,
                sequence_plan=plan,
                slot_outputs=slot_outputs,
                composing=info.composing_models,
                tracing=tracing,
            )
        except asyncio.CancelledError:
            store.finish_run(run_id, RunStatus.INTERRUPTED, "interrupted by the user")
            raise
        except ServerUnavailable as exc:
            outcome.status, outcome.error = (
                RunStatus.FAILED,
                f"server lost mid-run: {exc}{_traced_loss(tracing)}",
            )
        except ReferenceFailed as exc:
            outcome.status, outcome.error = RunStatus.FAILED, str(exc)
        except WorkerFailed as exc:  # the step it failed is not stored: never a smaller step
            outcome.status, outcome.error = RunStatus.FAILED, str(exc)
        except Exception as exc:
            store.finish_run(run_id, RunStatus.FAILED, f"{type(exc).__name__}: {exc}")
            raise
        else:
            outcome.status = RunStatus.COMPLETED
        store.finish_run(run_id, outcome.status, outcome.error)
        return outcome
    finally:
        await held.aclose()
        await transport.close()
        await api.close()
