"""A sweep run in this process against a real server, as the integration tests run one: its
stored steps, the run completed (else the test fails with the run's error)."""

from __future__ import annotations

import asyncio

from loadgen.config import SweepSettings
from loadgen.results import RunStatus
from loadgen.runner import execute_sweep
from loadgen.storage import RunStore, StepRecord


def swept(settings: SweepSettings, db: str) -> list[StepRecord]:
    with RunStore(db) as store:
        outcome = asyncio.run(execute_sweep(settings, store))
        assert outcome.status is RunStatus.COMPLETED, outcome.error
        return store.steps(outcome.run_id)
