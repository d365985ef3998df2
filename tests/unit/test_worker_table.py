"""Each worker's part of a step, as ``loadgen table --workers`` shows it and the findings read it."""

from __future__ import annotations

import pandas as pd

from analysis.finding_kinds import Kind
from analysis.frames import WORKER_COLUMNS
from analysis.worker_table import clock_findings, worker_table


def _frame(rate: float | None, uncertainty_us: float | None) -> pd.DataFrame:
    rows = [
        (0, 0, rate, worker, f"10.0.0.{worker} node ab pid 7", "1 send in 2, from #0", 500, 1, 80.0,
         None if uncertainty_us is None else 120.0, uncertainty_us)
        for worker in (0, 1)
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=list(WORKER_COLUMNS)).astype(
        {"request_rate": "float64", "clock_uncertainty_us": "float64", "clock_offset_us": "float64"}
    )


def test_a_clock_known_less_well_than_half_the_gap_between_sends_is_flagged() -> None:
    loose = _frame(2000.0, 300.0)  # half the 0.5 ms gap is 0.25 ms: 0.3 ms is too loose
    (finding,) = clock_findings(loose)
    assert finding.kind is Kind.CLOCKS and finding.step_index == 0
    assert "at 2000 req/s the workers' clocks were known to +-0.3 ms" in finding.text
    table = worker_table(loose)
    assert list(table["Clock offset (ms)"]) == ["0.12 ± 0.3 (too uncertain for the rate)"] * 2
    assert list(table["Load"]) == ["2000 req/s"] * 2 and list(table["Send lag p99 (ms)"]) == ["0.08"] * 2
    assert clock_findings(_frame(1000.0, 300.0)) == []  # 0.5 ms half-gap: tight enough
    closed = _frame(None, None)  # local workers of a closed loop: one clock, nothing to flag
    assert clock_findings(closed) == [] and list(worker_table(closed)["Clock offset (ms)"]) == ["", ""]
