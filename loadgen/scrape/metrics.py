"""Periodic scrapes of Triton's Prometheus endpoint (:8002/metrics) during a step.

Every ``nv_*`` sample is kept with the scrape's timestamp, parsed with
prometheus-client's own text parser, and so is every sample of the families ``--metrics-family``
names (a model's own metrics: the Python backend's ``pb_utils.MetricFamily`` serves them on the
same endpoint). A scrape that fails (no answer within its timeout, an HTTP error, a body that is
not Prometheus text) is counted, not fatal: metrics are context for the measurement, not the
measurement. A scrape never outlives its interval, and stopping cancels the one in flight, so a
hung endpoint cannot hold a step's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Sequence

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from loadgen.results import MetricSample

PREFIX = "nv_"
MAX_TIMEOUT_S = 5.0
"""The longest a scrape may wait for an answer, however long the interval."""


def family_filter(families: Sequence[str] = ()) -> re.Pattern[str]:
    """Matches the names of the families kept: ``nv_*`` and each of ``families`` (whole names)."""
    return re.compile("|".join([re.escape(PREFIX) + ".*", *(f"(?:{f})" for f in families)]))


_TRITON_ONLY = family_filter()


def parse_metrics(text: str, timestamp: float, keep: re.Pattern[str] = _TRITON_ONLY) -> list[MetricSample]:
    """The samples of every family whose name ``keep`` matches whole, under the names the server
    exposed.

    prometheus-client's parser renames counter samples to ``<family>_total``; Triton's
    counters have no such suffix, and PromQL users query them as exposed, so the
    suffix is removed again where the exposition did not have it.
    """
    samples = []
    for family in text_string_to_metric_families(text):
        if not keep.fullmatch(family.name):
            continue
        exposed_total = family.type == "counter" and f"\n{family.name}_total" in f"\n{text}"
        for s in family.samples:
            name = s.name
            if family.type == "counter" and not exposed_total and name == f"{family.name}_total":
                name = family.name
            samples.append(MetricSample(timestamp, name, dict(s.labels), float(s.value)))
    return samples


class MetricsScraper:
    """Scrapes ``url`` every ``interval_s`` in the background; :meth:`drain` hands over the samples."""

    def __init__(
        self,
        url: str,
        interval_s: float = 1.0,
        *,
        timeout_s: float | None = None,
        models: frozenset[str] | None = None,
        families: Sequence[str] = (),
    ) -> None:
        """``models``: keep only the series of these models (and those without a model label, such
        as GPU and CPU): a long step keeps its samples in memory until it is stored. ``families``:
        regular expressions of the families kept beside ``nv_*``. ``timeout_s``: by default one
        interval (at most :data:`MAX_TIMEOUT_S`): a scrape still unanswered when the next is due
        has failed."""
        self.url = url
        self.keep = family_filter(families)
        self.interval_s = interval_s
        self.models = models
        self.failures = 0
        self.last_error: str | None = None
        if timeout_s is None:
            timeout_s = min(interval_s, MAX_TIMEOUT_S)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._samples: list[MetricSample] = []
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def scrape_once(self) -> list[MetricSample]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(self.url) as response:
                response.raise_for_status()
                text = await response.text()
            samples = parse_metrics(text, time.time(), self.keep)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:  # ValueError: not Prometheus text
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return []
        if self.models is not None:
            models = self.models
            samples = [x for x in samples if x.labels.get("model", "") in models or "model" not in x.labels]
        self._samples.extend(samples)
        return samples

    async def _loop(self) -> None:
        next_at = time.monotonic()
        while True:
            await self.scrape_once()
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="metrics-scraper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def drain(self) -> list[MetricSample]:
        samples, self._samples = self._samples, []
        return samples

    async def close(self) -> None:
        await self.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None
