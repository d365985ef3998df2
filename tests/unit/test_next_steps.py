"""The lines that end a sweep: where the runs went, what to run next, what to do about unstable steps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from loadgen.commands.sweep import print_next_steps
from loadgen.histogram import LatencyHistogram
from loadgen.results import RunStatus, StepResult
from loadgen.runner import SweepOutcome


def _step(concurrency: int, stable: bool) -> StepResult:
    return StepResult(0, concurrency, datetime.now(UTC), 1.0, 10, 10, LatencyHistogram(), stable=stable)


def test_the_end_of_a_sweep_names_the_runs_the_next_command_and_what_to_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    outcomes = [
        SweepOutcome("a", 3, RunStatus.COMPLETED, [_step(1, True), _step(8, False)]),
        SweepOutcome("b", 4, RunStatus.COMPLETED, [_step(1, True)]),
    ]
    print_next_steps("postgresql+psycopg://u:SECRET@h/db", outcomes, report_written=False)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "loadgen: stored run 3 (a), run 4 (b) in postgresql+psycopg://u:***@h/db"
    assert err[1] == "loadgen: next: loadgen report 3 4 -o report.html --db 'postgresql+psycopg://u:***@h/db'"
    assert err[2].startswith("loadgen: 1 step(s) did not stabilise (concurrency 8): measure longer (-p)")
    assert len(err) == 3 and "SECRET" not in "\n".join(err)


def test_no_report_hint_when_the_report_was_written(capsys: pytest.CaptureFixture[str]) -> None:
    print_next_steps(
        "sqlite:///loadgen.db",
        [SweepOutcome("a", 1, RunStatus.COMPLETED, [_step(1, True)])],
        report_written=True,
    )
    assert capsys.readouterr().err.splitlines() == ["loadgen: stored run 1 (a) in sqlite:///loadgen.db"]
