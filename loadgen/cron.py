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
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

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
    """POST the verdict JSON; :class:`WebhookError` for a 4xx/5xx answer (never quoting the URL)."""
    timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.post(url, json=payload) as response:
        if response.status >= 400:
            raise WebhookError(f"answered HTTP {response.status}")


HOOK_TIMEOUT_S = 600.0
"""A hook still running after this is killed, with its children: a hung hook would hold its job
"running", and a job still running skips its turns."""

SHELL_EXIT = {126: "the command cannot be run", 127: "the shell found no such command"}
"""The shell's own exit statuses, said in words (``sh -c`` exits 127 for a missing command)."""


async def run_hook(command: str, payload: dict[str, Any], timeout_s: float | None = None) -> int:
    """Run ``command`` in a shell with the verdict JSON on its stdin; its exit status (-N: signal N).

    It runs in its own process group, killed whole when it outlives ``timeout_s`` (default
    :data:`HOOK_TIMEOUT_S`; :class:`TimeoutError`) or the scheduler stops: a hook never outlives its turn.
    """
    limit = HOOK_TIMEOUT_S if timeout_s is None else timeout_s
    process = await asyncio.create_subprocess_shell(
        command, stdin=asyncio.subprocess.PIPE, start_new_session=True
    )
    try:
        await asyncio.wait_for(process.communicate(json.dumps(payload).encode()), limit)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.returncode is None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(process.wait())
        raise
    return process.returncode if process.returncode is not None else -1


def redact_url(url: str) -> str:
    """``url`` as a log may show it: userinfo and every query value become ``***`` (tokens live there).

    ``https://user:pw@host/x?token=abc#f`` -> ``https://***@host/x?token=***``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    userinfo, at, host = parts.netloc.rpartition("@")
    pieces = (piece.partition("=") for piece in parts.query.split("&") if piece)
    query = "&".join(f"{name}=***" if equals else "***" for name, equals, _ in pieces)
    return urlunsplit((parts.scheme, f"***@{host}" if at else host, parts.path, query, ""))


def webhook_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook (checked when the scheduler starts, not at the first regression)."""
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected an http:// or https:// URL"
    return None if port_ok else "expected a port within 1..65535"


def _secrets(url: str) -> list[str]:
    """The parts of ``url`` that must not reach a log: userinfo, password, query and its values."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    values = [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    raw = [piece.partition("=")[2] or piece for piece in parts.query.split("&")]
    found = {url, userinfo, parts.password or "", parts.query, parts.fragment, *values, *raw}
    return sorted(filter(None, found), key=len, reverse=True)


def webhook_failure(exc: BaseException, url: str) -> str:
    """Why a POST failed, in words that name no secret of ``url`` (aiohttp's own messages may quote it)."""
    if isinstance(exc, WebhookError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"no answer within {WEBHOOK_TIMEOUT_S:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error  # asyncio words a refusal "Connect call failed": the errno says it plainly
        reason = error.strerror or str(error) or type(error).__name__
        if isinstance(error, ConnectionError) and error.errno:
            reason = os.strerror(error.errno)
        return f"cannot connect to {exc.host}:{exc.port}: {reason}"
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    try:
        secrets = _secrets(url)
    except ValueError:
        return type(exc).__name__
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def exit_text(status: int) -> str:
    """A hook's exit status in words: ``exited with status 3``, ``was killed by signal 9 (SIGKILL)``."""
    if status < 0:
        try:
            name = f" ({signal.Signals(-status).name})"
        except ValueError:
            name = ""
        return f"was killed by signal {-status}{name}"
    meaning = SHELL_EXIT.get(status)
    return f"exited with status {status}" + (f" ({meaning})" if meaning else "")


def describe(result: JobResult) -> str:
    """The one log line of a run: job, model, run id, verdict, baseline and why."""
    run = "no run" if result.run_id is None else f"run {result.run_id}"
    line = f"job {result.job} model {result.model} {run}: {result.outcome}"
    if result.baseline_id is not None:
        line += f" vs run {result.baseline_id}"
    return line + (f" ({result.note})" if result.note else "")


async def _notify(result: JobResult, webhook: str | None, hook: str | None) -> None:
    """The webhook (on a regression) and the hook (after every run), each failure one error line.

    The run and its verdict are stored before this, and nothing here touches the store: a
    notification that fails is said, never turned into a failed benchmark. Lines name the
    webhook with :func:`redact_url` and never the hook's command (either may hold a token).
    """
    payload = result.to_dict()
    run = "no run" if result.run_id is None else f"run {result.run_id}"
    which = f"job {result.job} model {result.model} {run}"
    if webhook is not None and result.outcome == "regression":
        try:
            await post_webhook(webhook, payload)
        except (aiohttp.ClientError, TimeoutError, WebhookError, OSError, ValueError) as exc:
            reason = webhook_failure(exc, webhook)
            log.error("%s: webhook %s not delivered: %s", which, redact_url(webhook), reason)
    if hook is not None:
        try:
            status = await run_hook(hook, payload)
        except TimeoutError:
            log.error("%s: hook killed after running %g s (--hook)", which, HOOK_TIMEOUT_S)
        except OSError as exc:
            log.error("%s: hook could not start (--hook): %s", which, exc.strerror or type(exc).__name__)
        else:
            if status != 0:
                log.error("%s: hook %s (--hook)", which, exit_text(status))


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
