"""``loadgen schedule``: a plan's jobs run on their cron expressions, in one long-running process.

One job measures at a time: a server is never loaded by two jobs at once, and jobs on
different servers would still share this process's event loop and CPU and skew each
other's numbers. A job whose turn comes while it is still running skips that turn. A job
that fails is logged and the others go on. Stopping (SIGTERM/SIGINT) interrupts the
running job: its run is marked interrupted, as a Ctrl-C'd sweep is.

Cron expressions are read in the machine's local time zone; a 6-field expression has a
leading seconds field (``*/10 * * * * *``: every 10 s), which is what tests use.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import aiohttp
from croniter import croniter

from loadgen.exporter import SweepExporter
from loadgen.plans import Job, JobResult, Plan, cron_fields, run_job
from loadgen.storage import RunStore

log = logging.getLogger("loadgen.scheduler")
WEBHOOK_TIMEOUT_S = 10.0


class WebhookError(RuntimeError):
    """The webhook answered with an HTTP error status."""


def next_fire(expression: str, after: float) -> float:
    """The first time (Unix seconds) strictly after ``after`` that the cron expression names."""
    text, seconds = cron_fields(expression)
    start = datetime.fromtimestamp(after).astimezone()
    return float(croniter(text, start, second_at_beginning=seconds).get_next(float))


async def post_webhook(url: str, payload: dict[str, Any]) -> None:
    """POST the verdict JSON; :class:`WebhookError` for a 4xx/5xx answer."""
    timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.post(url, json=payload) as response:
        if response.status >= 400:
            raise WebhookError(f"webhook {url} answered HTTP {response.status}")


async def run_hook(command: str, payload: dict[str, Any]) -> int:
    """Run ``command`` in a shell with the verdict JSON on its stdin; its exit status."""
    process = await asyncio.create_subprocess_shell(command, stdin=asyncio.subprocess.PIPE)
    await process.communicate(json.dumps(payload).encode())
    return process.returncode if process.returncode is not None else -1


def describe(result: JobResult) -> str:
    """The one log line of a run: job, model, run id, verdict, baseline and why."""
    run = "no run" if result.run_id is None else f"run {result.run_id}"
    line = f"job {result.job} model {result.model} {run}: {result.outcome}"
    if result.baseline_id is not None:
        line += f" vs run {result.baseline_id}"
    return line + (f" ({result.note})" if result.note else "")


async def _notify(result: JobResult, webhook: str | None, hook: str | None) -> None:
    payload = result.to_dict()
    if webhook is not None and result.outcome == "regression":
        try:
            await post_webhook(webhook, payload)
        except (aiohttp.ClientError, TimeoutError, WebhookError) as exc:
            log.error("job %s: webhook not delivered: %s", result.job, str(exc) or type(exc).__name__)
    if hook is not None:
        try:
            status = await run_hook(hook, payload)
        except OSError as exc:
            log.error("job %s: hook could not start: %s", result.job, exc)
        else:
            if status != 0:
                log.error("job %s: hook exited with status %d", result.job, status)


async def _turn(
    plan: Plan,
    job: Job,
    store: RunStore,
    lock: asyncio.Lock,
    webhook: str | None,
    hook: str | None,
    exporter: SweepExporter | None,
) -> None:
    try:
        async with lock:
            results = await run_job(plan, job, store, exporter=exporter)
    except Exception as exc:  # a daemon outlives any one job: say why it failed and go on
        models = ",".join(sweep.model for sweep in job.sweeps)
        log.error("job %s model %s failed: %s: %s", job.name, models, type(exc).__name__, exc)
        return
    for result in results:
        log.info("%s", describe(result))
        await _notify(result, webhook, hook)


async def run_cron_jobs(
    plan: Plan,
    jobs: Sequence[Job],
    store: RunStore,
    stop: asyncio.Event,
    *,
    webhook: str | None = None,
    hook: str | None = None,
    clock: Callable[[], float] = time.time,
    exporter: SweepExporter | None = None,
) -> None:
    """Run ``jobs`` (those with a cron expression) when it says, until ``stop`` is set.

    ``webhook`` receives the verdict JSON of each regressed run (POST); ``hook`` is a shell
    command run after every run with the verdict JSON on stdin. On stop, the running job is
    cancelled (its run is marked interrupted) before this returns.
    """
    scheduled = [job for job in jobs if job.cron]
    lock = asyncio.Lock()
    running: dict[str, asyncio.Task[None]] = {}
    due = {job.name: next_fire(job.cron or "", clock()) for job in scheduled}
    for job in scheduled:
        at = datetime.fromtimestamp(due[job.name]).astimezone().isoformat(timespec="seconds")
        log.info("job %s scheduled %r: first at %s", job.name, job.cron, at)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while scheduled and not stop.is_set():
            job = min(scheduled, key=lambda j: due[j.name])
            delay = due[job.name] - clock()
            if delay > 0:
                await asyncio.wait({stopped}, timeout=delay)
                continue
            task = running.get(job.name)
            if task is not None and not task.done():
                log.warning("job %s is still running: this turn is skipped", job.name)
            else:
                running[job.name] = asyncio.create_task(
                    _turn(plan, job, store, lock, webhook, hook, exporter)
                )
            due[job.name] = next_fire(job.cron or "", max(clock(), due[job.name]))
        if not scheduled:
            await stopped
    finally:
        stopped.cancel()
        for task in running.values():
            task.cancel()
        await asyncio.gather(stopped, *running.values(), return_exceptions=True)
