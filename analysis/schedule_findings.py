"""What an open loop's own sender says about a step: whether it kept to its schedule, and how late
its sends left.

Response times count from each send's intended time, so a late sender never flatters the
latencies; but the server then saw less load, or a burstier one, than the step's rate says.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.finding_kinds import Finding, Kind, Severity
from analysis.frames import load_level

LATE_SEND_US = 100.0
"""A step whose sends left later than this at p99 is flagged: an idle sender holds tens of
microseconds (``benchmarks/RESULTS.md``), more means its loop was busy enough to bunch sends."""


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return None if math.isnan(number) else number


def schedule_findings(steps: pd.DataFrame) -> list[Finding]:
    """Open-loop steps whose sender fell behind (missed more than 2% of the schedule or refused
    sends at the in-flight cap), or kept up but sent late at p99."""
    found: list[Finding] = []
    if "behind_schedule" not in steps.columns:
        return found
    for row in steps.to_dict("records"):
        rate = _number(row.get("request_rate"))
        if rate is None:
            continue
        label = load_level(row)[0]
        index = int(row["step_index"])
        lag_us = _number(row.get("send_lag_p99_us"))
        sent = _number(row.get("send_rate"))
        if isinstance(behind := row.get("behind_schedule"), bool | np.bool_) and behind:
            refused = int(_number(row.get("refused_count")) or 0)
            text = (
                f"{label}: the client fell behind its schedule, sending {sent or 0:,.0f} req/s"
                + (f" ({refused:,} sends refused at --max-in-flight)" if refused else "")
                + ": the server saw less load than the step says; add --workers, or lower the rate"
            )
            found.append(Finding(Kind.BEHIND_SCHEDULE, Severity.WARNING, text, index))
        elif lag_us is not None and lag_us > LATE_SEND_US:
            text = (
                f"{label}: the client's sends left up to {lag_us:,.0f} us late (p99; the schedule's mean "
                f"gap is {1e6 / rate:,.0f} us): the load came burstier than asked (latencies still count "
                "from the intended times); --workers spreads the sending"
            )
            found.append(Finding(Kind.LATE_SENDS, Severity.INFO, text, index))
    return found
