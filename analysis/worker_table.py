"""Each worker's part of each step (``--workers``, ``--ray``): where it ran, what it was given,
what it did, and, on Ray, how well its clock was known.

A step's numbers are the exact merge of its workers' windows; this view is for the questions
a merge hides: did one node fall behind (its send lag), fail (its errors), or start an open-loop
schedule at an instant too uncertain for the rate (its clock)?
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any

import pandas as pd

from analysis.finding_kinds import Finding, Kind, Severity
from analysis.frames import load_level
from loadgen.results import clock_too_uncertain


def _uncertain(row: Mapping[Hashable, Any]) -> bool:
    rate, uncertainty = row["request_rate"], row["clock_uncertainty_us"]
    if not isinstance(rate, float) or not isinstance(uncertainty, float):
        return False
    if math.isnan(rate) or math.isnan(uncertainty):
        return False
    return clock_too_uncertain(uncertainty, rate)


def _ms(us: object) -> str:
    return "" if not isinstance(us, int | float) or math.isnan(us) else f"{us / 1000:.3g}"


def worker_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per worker and step, for ``loadgen table RUN --workers``."""
    lines = []
    for row in frame.to_dict("records"):
        offset, uncertainty = row["clock_offset_us"], row["clock_uncertainty_us"]
        clock = "" if offset is None or math.isnan(offset) else f"{_ms(offset)} ± {_ms(uncertainty)}"
        if clock and _uncertain(row):
            clock += " (too uncertain for the rate)"
        lines.append(
            {
                "Load": load_level(row)[0],
                "Worker": row["worker"],
                "Node": row["node"],
                "Share": row["share"],
                "Requests": row["requests"],
                "Errors": row["errors"],
                "Send lag p99 (ms)": _ms(row["send_lag_p99_us"]),
                "Clock offset (ms)": clock,
            }
        )
    return pd.DataFrame(lines)


def clock_findings(frame: pd.DataFrame) -> list[Finding]:
    """Open-loop steps whose workers' start instants were known less well than the gap between sends."""
    found = []
    for index, group in frame.groupby("step_index", sort=True):
        rows = group.to_dict("records")
        if not any(_uncertain(row) for row in rows):
            continue
        worst = max(row["clock_uncertainty_us"] for row in rows)
        rate = rows[0]["request_rate"]
        found.append(
            Finding(
                Kind.CLOCKS,
                Severity.WARNING,
                f"at {rate:g} req/s the workers' clocks were known to +-{worst / 1000:.3g} ms, more than "
                f"half the {1000 / rate:.3g} ms between sends: the shared schedule may start out of step on "
                "some nodes (their sends are still timed on one host each); a faster network to the nodes, "
                "or fewer nodes, narrows it",
                step_index=int(str(index)),
            )
        )
    return found
