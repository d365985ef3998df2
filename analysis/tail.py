"""What the slowest requests waited for: Triton's traces of sampled requests (``--trace-rate``)
split each one's latency into the server's queue, its compute, the rest of the server (protocol
handling, ensemble scheduling, sending) and what lies outside the server (network, client).

The median request (those between the 45th and 55th percentile of the sample's latency) is set
beside the slowest 1% and 0.1%: when the slow ones spend their extra time in the queue the cure is
capacity or batching, when in compute it is the model, when outside it is the network or client.
A group is formed only when the sample holds enough requests for it (100 for the slowest 1%, 1000
for the slowest 0.1%): a "slowest 1%" of a single request would be an anecdote.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.finding_kinds import Finding, Kind, Severity
from analysis.frames import load_level


@dataclass(frozen=True)
class Part:
    """How tables and findings speak of one part of a request's latency."""

    column: str
    where: str
    """``... of the slowest 1% of requests' time is <where>``"""
    name: str
    """``the p99 is <name>``"""
    cure: str


SAID = {
    "queue": Part("Queue", "in the queue", "queueing", "add an instance or lower max_queue_delay"),
    "compute": Part(
        "Compute", "in compute", "compute", "some executions are slow: the model, not the waiting"
    ),
    "server_other": Part(
        "Server other",
        "in the server outside queue and compute",
        "the server's own handling",
        "Triton's own handling (protocol, ensemble scheduling, sending) is slow",
    ),
    "outside": Part(
        "Outside",
        "outside the server",
        "outside the server",
        "the network or the client is slow, not the server",
    ),
}
PARTS = tuple(SAID)
GROUPS = (("median", 0.45, 0.55, 1), ("slowest 1%", 0.99, 1.0, 100), ("slowest 0.1%", 0.999, 1.0, 1000))
"""(name, lower quantile, upper quantile, sampled requests needed)."""
TAIL_COLUMNS = ("step_index", "load", "group", "requests", "client_us", *(f"{p}_us" for p in PARTS))


def request_parts(samples: pd.DataFrame) -> pd.DataFrame:
    """The top-level samples (not an ensemble's or BLS model's children) with their latency split
    into :data:`PARTS` (microseconds; parts clamped at 0, so they add up to at least the latency)."""
    top = samples[samples["parent_id"].isna()].copy()
    top["server_other_us"] = np.maximum(
        top["server_us"] - top["queue_us"].fillna(0) - top["compute_us"].fillna(0), 0
    )
    top["outside_us"] = np.maximum(top["client_us"] - top["server_us"], 0)
    return top


def tail_frame(samples: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """Per step and group (median, slowest 1%, slowest 0.1%): requests in it, their mean latency and
    mean parts (us). Groups the step's sample is too small for are left out."""
    rows = []
    parts = request_parts(samples)
    loads = {int(row["step_index"]): load_level(row)[0] for row in steps.to_dict("records")}
    for step_index, group in parts.groupby("step_index", sort=True):
        latency = group["client_us"].to_numpy()
        for name, low, high, needed in GROUPS:
            if len(group) < needed:
                continue
            lo, hi = np.quantile(latency, [low, high])
            chosen = group[(group["client_us"] >= lo) & (group["client_us"] <= hi)]
            if chosen.empty:
                continue
            means = [float(chosen[f"{p}_us"].fillna(0).mean()) for p in PARTS]
            index = int(str(step_index))
            rows.append(
                (index, loads.get(index, ""), name, len(chosen), float(chosen["client_us"].mean()), *means)
            )
    return pd.DataFrame(rows, columns=list(TAIL_COLUMNS))


def tail_table(tail: pd.DataFrame) -> pd.DataFrame:
    """:func:`tail_frame` as a table: milliseconds, and each part's share of the group's latency."""
    table = pd.DataFrame({"Load": tail["load"], "Requests": tail["group"], "Sampled": tail["requests"]})
    table["Latency (ms)"] = tail["client_us"] / 1000.0
    for part in PARTS:
        share = tail[f"{part}_us"] / tail["client_us"]
        label = SAID[part].column
        table[f"{label} (ms)"] = tail[f"{part}_us"] / 1000.0
        table[f"{label} %"] = [f"{v:.0%}" if not math.isnan(v) else "-" for v in share]
    return table


def _said(load: object) -> str:
    return str(load).replace("c=", "concurrency ")


def tail_findings(tail: pd.DataFrame) -> list[Finding]:
    """Where the slowest 1% spend their time, one finding per run of neighbouring loads where the
    same part leads, said at the highest of them, beside the median request's share of that part."""
    rows: list[dict[Hashable, Any]] = tail.sort_values("step_index").to_dict("records")
    medians = {int(r["step_index"]): r for r in rows if r["group"] == "median"}
    runs: list[list[tuple[str, dict[Hashable, Any]]]] = []
    for row in rows:
        if row["group"] != "slowest 1%":
            continue
        part = max(PARTS, key=lambda p: float(row[f"{p}_us"]))
        if runs and runs[-1][-1][0] == part:
            runs[-1].append((part, row))
        else:
            runs.append([(part, row)])
    found = []
    for group in runs:
        part, row = group[-1]
        index = int(row["step_index"])
        share = float(row[f"{part}_us"]) / float(row["client_us"])
        median = ""
        if (m := medians.get(index)) is not None:
            median = f" (the median request's: {float(m[f'{part}_us']) / float(m['client_us']):.0%})"
        where = "" if len(group) == 1 else f" from {_said(group[0][1]['load'])} to {_said(row['load'])}"
        text = (
            f"the p99 is {SAID[part].name}{where}: {share:.0%} of the slowest 1% of requests' time is "
            f"{SAID[part].where} at {_said(row['load'])}{median}; {SAID[part].cure}"
        )
        found.append(Finding(Kind.TAIL, Severity.INFO, text, index))
    return found


OVERHEAD_WARNING = 0.05
"""Tracing that costs this share of throughput or more is called out: the traced numbers are lower."""


def overhead_table(steps: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """Per traced step: requests sampled, throughput traced and in the untraced window after it."""
    sampled = samples[samples["parent_id"].isna()].groupby("step_index").size()
    traced = steps[steps["untraced_throughput"].notna()].sort_values("step_index")
    return pd.DataFrame(
        {
            "Load": [load_level(row)[0] for row in traced.to_dict("records")],
            "Sampled": traced["step_index"].map(sampled).fillna(0).astype("int64").to_numpy(),
            "Traced (infer/s)": traced["throughput"].to_numpy(),
            "Untraced (infer/s)": traced["untraced_throughput"].to_numpy(),
            "Overhead": [
                f"{1 - t / u:+.1%}" if u > 0 else "-"
                for t, u in zip(traced["throughput"], traced["untraced_throughput"], strict=True)
            ],
        }
    )


def overhead_findings(steps: pd.DataFrame, rate: int) -> list[Finding]:
    """Tracing that cost :data:`OVERHEAD_WARNING` or more of a step's throughput."""
    found = []
    for row in steps[steps["untraced_throughput"].notna()].to_dict("records"):
        traced, untraced = float(row["throughput"]), float(row["untraced_throughput"])
        if untraced > 0 and 1 - traced / untraced >= OVERHEAD_WARNING:
            text = (
                f"tracing one request in {rate} cost {1 - traced / untraced:.0%} of the throughput at "
                f"{_said(load_level(row)[0])} ({traced:,.1f} traced vs {untraced:,.1f} infer/s in a window "
                "without it): the traced step's numbers are lower than the model's"
            )
            found.append(Finding(Kind.TAIL, Severity.WARNING, text, int(row["step_index"])))
    return found
