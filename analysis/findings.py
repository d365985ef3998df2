"""Findings: what a run's numbers say, computed from its frames so that tests can check them.

A reader of a sweep wants three answers: where does the server saturate, how much
throughput fits the latency objective, and which part of the latency to attack.
Anything that makes the numbers less trustworthy (errors, unstable steps, a run that
did not complete) is called out beside them.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.bottlenecks import avg_batch, hint
from analysis.finding_kinds import Finding, Kind, Severity, ranked
from analysis.frames import latency_components, load_level
from analysis.model_breakdown import model_findings
from analysis.model_config import read_batching
from analysis.schedule_findings import schedule_findings
from analysis.sharing import other_requests, shared_text
from analysis.tail import overhead_findings, tail_findings, tail_frame
from analysis.worker_table import clock_findings
from loadgen.config import parse_latency_limit
from loadgen.errors import ConfigError, SettingsError
from loadgen.results import RunStatus
from loadgen.storage import RunRecord

KNEE_GROWTH = 0.05
"""A step beyond which throughput never grows by this share again, while p99 rises, is the knee."""

SLO_PERCENTILES = (50, 90, 95, 99)
"""Percentiles stored per step, the ones an SLO can name."""

FALL_TOLERANCE = 0.05
"""Throughput lower by more than this share at a higher load is flagged (less is noise)."""

FIRST_RESPONSE_GROWTH = 1.5
"""Streams: a first-response p50 above this many times the lowest load's is requests queueing."""


@dataclass(frozen=True)
class Slo:
    """A latency objective: ``percentile`` of request latency at most ``limit_ms``."""

    limit_ms: float
    percentile: int = 99

    def __post_init__(self) -> None:
        if self.percentile not in SLO_PERCENTILES:
            allowed = ", ".join(f"p{p}" for p in SLO_PERCENTILES)
            raise ConfigError(f"--slo percentile must be one of {allowed}, got p{self.percentile}")
        if not (self.limit_ms > 0 and math.isfinite(self.limit_ms)):
            raise ConfigError(f"--slo limit must be a positive time, got {self.limit_ms} ms")

    @property
    def column(self) -> str:
        return f"lat_p{self.percentile}_us"

    def __str__(self) -> str:
        return f"p{self.percentile} <= {self.limit_ms:g} ms"


def parse_slo(text: str) -> Slo:
    """``p99=50ms``, ``p95=0.2s`` or ``50ms`` (meaning p99); a bare number is milliseconds."""
    try:
        limit = parse_latency_limit(text, "--slo")
    except SettingsError as exc:  # the limit's own rules (a percentile within (0, 100])
        raise ConfigError(f"bad --slo {text!r}: {exc.render(lambda key: 'its')}") from None
    except ConfigError as exc:
        raise ConfigError(f"bad --slo {text!r}: {exc}" if "--slo" not in str(exc) else str(exc)) from None
    if limit.percentile != int(limit.percentile):
        raise ConfigError(f"bad --slo {text!r}: the percentile must be one of p50, p90, p95, p99")
    return Slo(limit.limit_us / 1000.0, int(limit.percentile))


Row = dict[Hashable, Any]


def _ms(us: float) -> str:
    return f"{us / 1000.0:.3g} ms" if us < 10_000 else f"{us / 1000.0:.1f} ms"


def _level(row: Row) -> str:
    label, _ = load_level(row)
    return label.replace("c=", "concurrency ")


def _rows(steps: pd.DataFrame) -> list[Row]:
    return steps.to_dict("records")


def _by_load(steps: pd.DataFrame) -> list[Row]:
    return sorted(_rows(steps), key=lambda row: (load_level(row)[1], row["step_index"]))


def _known(value: Any) -> bool:
    return value is not None and not math.isnan(value)


def saturation_knee(steps: pd.DataFrame, growth: float = KNEE_GROWTH) -> int | None:
    """Step index of the knee: the first step (by load) after which throughput never again grows
    by ``growth`` or more while p99 latency rises at the next step. None while throughput still grows.

    Comparing with every later step, not only the next one, keeps a one-step plateau (a noisy
    or unstable step) from being mistaken for saturation.
    """
    rows = [row for row in _by_load(steps) if row["throughput"] > 0 and _known(row["lat_p99_us"])]
    for i, (row, nxt) in enumerate(zip(rows, rows[1:], strict=False)):
        best_later = max(later["throughput"] for later in rows[i + 1 :])
        if best_later < row["throughput"] * (1 + growth) and nxt["lat_p99_us"] > row["lat_p99_us"]:
            return int(row["step_index"])
    return None


def best_under_slo(steps: pd.DataFrame, slo: Slo) -> int | None:
    """Step index of the highest throughput whose latency meets ``slo``, among error-free steps."""
    ok = [
        row
        for row in _rows(steps)
        if row["error_count"] == 0 and _known(row[slo.column]) and row[slo.column] <= slo.limit_ms * 1000.0
    ]
    return int(max(ok, key=lambda row: row["throughput"])["step_index"]) if ok else None


def _parts(steps: pd.DataFrame) -> list[tuple[Row, dict[str, float]]]:
    """Each step with server statistics, and its latency parts (us)."""
    parts = latency_components(steps).to_dict("records")
    return [
        (row, {str(k): float(v) for k, v in part.items()})
        for row, part in zip(_rows(steps), parts, strict=True)
        if all(_known(v) for v in part.values()) and other_requests(row) is None
    ]


def dominant_components(steps: pd.DataFrame) -> dict[int, str]:
    """Step index -> the largest part of its mean latency (steps without server stats left out)."""
    return {int(row["step_index"]): max(part, key=part.__getitem__) for row, part in _parts(steps)}


def knee_findings(steps: pd.DataFrame) -> list[Finding]:
    if len(steps) < 2:
        return []
    knee = saturation_knee(steps)
    if knee is None:
        return [
            Finding(
                Kind.KNEE,
                Severity.INFO,
                f"no saturation knee in the measured levels: throughput still grows by {KNEE_GROWTH:.0%} "
                "or more at higher load (or latency does not rise)",
            )
        ]
    ordered = [row for row in _by_load(steps) if row["throughput"] > 0 and _known(row["lat_p99_us"])]
    position = next(i for i, row in enumerate(ordered) if row["step_index"] == knee)
    at, nxt = ordered[position], ordered[position + 1]
    best_later = max(row["throughput"] for row in ordered[position + 1 :])
    text = (
        f"saturation knee at {_level(at)}: beyond it throughput grows less than {KNEE_GROWTH:.0%} "
        f"({at['throughput']:.1f} infer/s, at most {best_later:.1f} at higher load) while p99 rises "
        f"{_ms(at['lat_p99_us'])} -> {_ms(nxt['lat_p99_us'])} at {_level(nxt)}: more load only adds latency"
    )
    return [Finding(Kind.KNEE, Severity.INFO, text, knee)]


def slo_findings(steps: pd.DataFrame, slo: Slo) -> list[Finding]:
    best = best_under_slo(steps, slo)
    if best is None:
        measured = [row for row in _rows(steps) if _known(row[slo.column])]
        if not measured:
            return [Finding(Kind.SLO, Severity.WARNING, f"no step has a p{slo.percentile} to check {slo}")]
        low = min(measured, key=lambda row: row[slo.column])
        text = (
            f"no error-free step meets {slo}: the lowest p{slo.percentile} is "
            f"{_ms(low[slo.column])} at {_level(low)}"
        )
        return [Finding(Kind.SLO, Severity.WARNING, text, int(low["step_index"]))]
    row = next(row for row in _rows(steps) if row["step_index"] == best)
    text = (
        f"best throughput with {slo}: {row['throughput']:.1f} infer/s at {_level(row)} "
        f"(p{slo.percentile} {_ms(row[slo.column])})"
    )
    if not row["stable"]:
        text += "; that step was unstable"
    return [Finding(Kind.SLO, Severity.INFO, text, best)]


def _errors_text(errors: dict[str, int]) -> str:
    text = "; ".join(f"{count} x {reason}" for reason, count in sorted(errors.items(), key=lambda kv: -kv[1]))
    return text if len(text) <= 300 else text[:297] + "..."


def unanswered_text(level: str, unanswered: int, concurrency: int) -> str:
    """Why a closed-loop step's concurrency overstates the load (also the CLI's warning)."""
    return (
        f"{level}: up to {unanswered} of {concurrency} slots got no answer during a whole window: the"
        " server held fewer requests in flight than the concurrency says (connections it stopped"
        " serving, or a stall)"
    )


def quality_findings(steps: pd.DataFrame) -> list[Finding]:
    """Failed requests, wrong answers (``--validate``), unstable steps, steps without server statistics."""
    found = []
    for row in _rows(steps):
        index = int(row["step_index"])
        if row["error_count"] > 0:
            failed = int(row["error_count"])
            said = (
                f"every one of its {failed} requests failed, so its numbers describe failures"
                if row["request_count"] == 0
                else f"{failed} failed request(s)"
            )
            text = f"{_level(row)}: {said}: {_errors_text(row['errors'])}"
            found.append(Finding(Kind.ERRORS, Severity.ERROR, text, index))
        if not row["stable"]:
            text = (
                f"{_level(row)} did not stabilise within {int(row['window_count'])} window(s): "
                "its numbers are from the last windows and may be off"
            )
            found.append(Finding(Kind.UNSTABLE, Severity.WARNING, text, index))
        mismatched = row.get("mismatch_count")
        if mismatched is not None and _known(mismatched) and mismatched > 0:
            detail = row.get("validation") or {}
            text = (
                f"{_level(row)}: {int(mismatched)} of {int(row['validated_count'])} answers differ from "
                f"the reference beyond the tolerance, {int(row['swapped_count'])} of them equal to another "
                f"request's reference (swapped/stale)"
                + (  # compared within a tolerance (floats) or not at all (an exact type: no diff)
                    f"; max abs diff {row['max_abs_diff']:.3g}, max rel diff {row['max_rel_diff']:.3g}"
                    if row["max_abs_diff"] or row["max_rel_diff"]
                    else ""
                )
                + (f"; first: {detail['example']}" if detail.get("example") else "")
            )
            found.append(Finding(Kind.MISMATCH, Severity.ERROR, text, index))
        unanswered = row.get("unanswered_slots")
        if unanswered is not None and _known(unanswered) and unanswered > 0:
            text = unanswered_text(_level(row), int(unanswered), int(row["concurrency"]))
            found.append(Finding(Kind.UNANSWERED, Severity.WARNING, text, index))
        if row["server_stats_reset"]:
            text = (
                f"{_level(row)}: the server's counters went down or could not be read (model reloaded?): "
                "no latency breakdown"
            )
            found.append(Finding(Kind.STATS_MISSING, Severity.WARNING, text, index))
        if isinstance(row.get("interrupted"), str):
            text = (
                f"{_level(row)} was cut short, the server went away ({row['interrupted']}): its numbers "
                f"cover the {int(row['window_count'])} window(s) before, and compare leaves it out"
            )
            found.append(Finding(Kind.INTERRUPTED, Severity.ERROR, text, index))
        gaps = row.get("metrics_failed_scrapes")
        if gaps is not None and _known(gaps) and gaps > 0:
            text = (
                f"{_level(row)}: {int(gaps)} scrape(s) of the metrics endpoint failed: a gap in its samples"
            )
            found.append(Finding(Kind.METRICS_GAP, Severity.WARNING, text, index))
    return found


def _span(rows: list[Row]) -> str:
    """``concurrency 1`` or ``concurrency 1 to 8`` (``10 req/s to 40 req/s``)."""
    first, last = _level(rows[0]), load_level(rows[-1])[0]
    return first if len(rows) == 1 else f"{first} to {last.removeprefix('c=')}"


def component_findings(steps: pd.DataFrame, config: dict[str, Any] | None = None) -> list[Finding]:
    """The dominant part of the latency, one finding per run of neighbouring loads where the same
    part dominates (not one per step), with the hint read at its highest load: the model's config
    and the batches the server executed decide what the hint says."""
    batching = read_batching(config)
    if batching is not None and batching.decoupled and not steps.empty:
        text = (
            "no latency breakdown for a decoupled model: Triton's compute times cover only the call "
            "that starts each stream, not the responses the model sends from its own threads"
        )
        return [Finding(Kind.DOMINANT, Severity.INFO, text)]
    ordered = sorted(_parts(steps), key=lambda item: (load_level(item[0])[1], item[0]["step_index"]))
    groups: list[list[tuple[Row, dict[str, float]]]] = []
    for row, part in ordered:
        component = max(part, key=part.__getitem__)
        if groups and max(groups[-1][0][1], key=groups[-1][0][1].__getitem__) == component:
            groups[-1].append((row, part))
        else:
            groups.append([(row, part)])
    found = []
    for group in groups:
        row, part = group[-1]
        component = max(part, key=part.__getitem__)
        shares = [p[component] / total for _, p in group if (total := sum(p.values())) > 0]
        total = sum(part.values())
        if len(group) == 1 or f"{min(shares):.0%}" == f"{max(shares):.0%}":
            share = part[component] / total if total > 0 else 0.0
            said = f"{_ms(part[component])} of {_ms(total)} ({share:.0%})"
        else:
            said = (
                f"{min(shares):.0%} to {max(shares):.0%} of the mean latency "
                f"({_ms(part[component])} of {_ms(total)} at {_level(row)})"
            )
        advice = hint(component, batching, avg_batch(row))
        if max(shares, default=0.0) < 0.5:  # the largest part, not the most of the latency
            advice = advice.replace(" dominates", " is the largest part", 1)
        text = f"{_span([r for r, _ in group])}: {said}; {advice}"
        found.append(Finding(Kind.DOMINANT, Severity.INFO, text, int(row["step_index"]), component))
    return found


def throughput_falls(before: float, after: float) -> bool:
    """Throughput at a higher load below the lower load's by more than :data:`FALL_TOLERANCE`."""
    return before > 0 and after < before * (1 - FALL_TOLERANCE)


def falls_findings(steps: pd.DataFrame) -> list[Finding]:
    """Each step whose throughput falls below the previous load's: past saturation a server should
    hold its throughput; losing it means contention (threads, memory, a batcher thrashing) or a
    disturbed measurement, and either way the higher loads are not worth running."""
    rows = [
        row
        for row in _by_load(steps)
        if row["request_count"] > 0 and not isinstance(row.get("interrupted"), str)
    ]
    found = []
    for before, after in zip(rows, rows[1:], strict=False):
        if throughput_falls(before["throughput"], after["throughput"]):
            drop = 1 - after["throughput"] / before["throughput"]
            text = (
                f"throughput falls while load rises: {after['throughput']:,.1f} infer/s at {_level(after)}, "
                f"{drop:.0%} below {before['throughput']:,.1f} at {_level(before)}: the server loses "
                "throughput under more load (contention), or the step was disturbed: measure it again "
                "with a longer -p"
            )
            found.append(Finding(Kind.THROUGHPUT_FALLS, Severity.WARNING, text, int(after["step_index"])))
    return found


def first_response_findings(steps: pd.DataFrame) -> list[Finding]:
    """Streams (``--streaming``): the first load whose time to first response (p50) exceeds
    :data:`FIRST_RESPONSE_GROWTH` times the lowest load's, where requests start to queue for the
    server before it answers at all; or that it holds over the loads measured. None for unary runs."""
    if "first_response_p50_us" not in steps:
        return []
    rows = [
        row
        for row in _by_load(steps)
        if _known(row["first_response_p50_us"]) and not isinstance(row.get("interrupted"), str)
    ]
    if len(rows) < 2:
        return []
    low, first = rows[0], rows[0]["first_response_p50_us"]
    alone = "alone" if load_level(low)[0] == "c=1" else f"at {_level(low)}"
    grown = [row for row in rows[1:] if row["first_response_p50_us"] > FIRST_RESPONSE_GROWTH * first]
    at = grown[0] if grown else rows[-1]
    said = f"first response p50 {_ms(at['first_response_p50_us'])}"
    text = (
        f"requests queue before their first response from {_level(at)}: {said} vs {_ms(first)} {alone}"
        if grown
        else f"time to first response holds with load: {said} at {_level(at)} vs {_ms(first)} {alone} "
        f"(within {FIRST_RESPONSE_GROWTH:g}x)"
    )
    return [Finding(Kind.FIRST_RESPONSE, Severity.INFO, text, int(at["step_index"]))]


def step_findings(
    steps: pd.DataFrame, slo: Slo | None = None, config: dict[str, Any] | None = None
) -> list[Finding]:
    """Everything the steps frame says, ranked (:data:`RANK`); ``config``: the model's config,
    which the bottleneck hints read."""
    found = knee_findings(steps)
    if slo is not None and not steps.empty:
        found += slo_findings(steps, slo)
    found += quality_findings(steps) + falls_findings(steps) + first_response_findings(steps)
    found += schedule_findings(steps)
    found += component_findings(steps, config)
    if shared := [(_level(row), row) for row in _rows(steps) if other_requests(row) is not None]:
        found.append(
            Finding(Kind.SHARED_MODEL, Severity.WARNING, shared_text(shared), int(shared[0][1]["step_index"]))
        )
    return ranked(found)


def status_findings(run: RunRecord) -> list[Finding]:
    """A run that did not complete, or has no finished step, is called out first."""
    kept = f"the report shows its {run.step_count} finished step(s)"
    found = []
    if run.status is RunStatus.FAILED:
        found.append(Finding(Kind.STATUS, Severity.ERROR, f"run {run.id} failed: {run.error}; {kept}"))
    elif run.status is RunStatus.INTERRUPTED:
        found.append(Finding(Kind.STATUS, Severity.WARNING, f"run {run.id} was interrupted; {kept}"))
    elif run.status is RunStatus.RUNNING:
        text = f"run {run.id} is still running (or its process died without closing it); {kept} so far"
        found.append(Finding(Kind.STATUS, Severity.WARNING, text))
    if run.step_count == 0:
        found.append(
            Finding(Kind.NO_STEPS, Severity.ERROR, f"run {run.id} has no finished step: nothing to plot")
        )
    return found


def run_findings(
    run: RunRecord,
    steps: pd.DataFrame,
    slo: Slo | None = None,
    *,
    composing: pd.DataFrame | None = None,
    traces: pd.DataFrame | None = None,
    workers: pd.DataFrame | None = None,
) -> list[Finding]:
    """All findings of one run, the most serious kinds first; ``composing``: the composing models'
    frame of an ensemble or BLS model, ``traces``: the joined traces of ``--trace-rate``,
    ``workers``: each worker's part of each step."""
    return status_findings(run) + ranked(
        step_findings(steps, slo, run.model_config) + detail_findings(run, steps, composing, traces, workers)
    )


def detail_findings(
    run: RunRecord,
    steps: pd.DataFrame,
    composing: pd.DataFrame | None,
    traces: pd.DataFrame | None,
    workers: pd.DataFrame | None = None,
) -> list[Finding]:
    """What a composite model's breakdown, the traces of sampled requests and the workers say."""
    found = [] if composing is None or composing.empty else model_findings(composing)
    if workers is not None and not workers.empty:
        found += clock_findings(workers)
    if traces is not None and not traces.empty:
        found += tail_findings(tail_frame(traces, steps))
        found += overhead_findings(steps, int(run.settings.get("trace_rate") or 0))
    return found
