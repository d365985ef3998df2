"""The model's served config changed candidate by candidate through Triton's repository API, and
the original put back however the tune ends: done, failed, Ctrl-C or SIGTERM.

What Triton does with each load (measured on 2.51): an instance-count change alone is applied in
place (instances added or removed, the model keeps serving and keeps its ``/stats``); a batching
change reloads the model (``/stats`` start again from zero, Prometheus counters do not); a config
it refuses leaves the model that was loaded serving. Each candidate is measured as a run of its
own, started only after the load returned and the served config was read back as the candidate,
so no step spans a reload and no step mixes two configs' counters.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any, Self

from loadgen.errors import ConfigError
from loadgen.scrape.server_api import ServerAPI
from loadgen.tune.overrides import mismatch, override, served_candidate
from loadgen.tune.space import Candidate

EXPLICIT_HINT = (
    "Triton must run with --model-control-mode=explicit for a live tune "
    "(loadgen serve --model-control explicit, or loadgen tune --embedded)"
)


class CandidateRefused(ConfigError):
    """Triton would not load this candidate; the model loaded before still serves."""


class LiveConfig:
    def __init__(self, api: ServerAPI, model: str) -> None:
        self.api = api
        self.model = model
        self.original: dict[str, Any] = {}
        self._changed = False
        self.restored = False
        """The original config was put back after a change (the tune's closing line says so)."""

    @property
    def served(self) -> Candidate:
        return served_candidate(self.original)

    async def __aenter__(self) -> Self:
        self.original = await self.api.model_config(self.model)
        return self

    async def apply(self, candidate: Candidate) -> None:
        """Load the candidate and confirm Triton serves it; CandidateRefused where it will not."""
        config = override(self.original, candidate)  # a config no candidate can edit: the tune stops
        self._changed = True
        try:
            await self.api.load_model(self.model, config)
        except ConfigError as exc:
            text = str(exc)
            if "not allowed" in text or "polling is enabled" in text:
                raise ConfigError(f"{text}: {EXPLICIT_HINT}") from None
            raise CandidateRefused(f"{text} (Triton's log says why)") from None
        served = await self.api.model_config(self.model)
        if (why := mismatch(served, candidate)) is not None:
            raise CandidateRefused(why)

    async def restore(self) -> None:
        """The original config back, confirmed; a failure says what is served and how to mend it."""
        if not self._changed:
            return
        await self.api.load_model(self.model, self.original)
        served = await self.api.model_config(self.model)
        if (why := mismatch(served, self.served)) is not None:
            raise ConfigError(f"could not put {self.model!r}'s config back: {why}")
        self._changed = False
        self.restored = True

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Restore; a SIGTERM arriving meanwhile (a task cancel) waits for it: a model left on a
        candidate's config is worse than a second's delay. A second Ctrl-C still stops everything."""
        restoring = asyncio.ensure_future(self.restore())
        while not restoring.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(restoring)
        try:
            restoring.result()
        except ConfigError as exc:
            if error is None:
                raise
            raise ConfigError(f"{exc}; the tune ended first: {error}") from error
