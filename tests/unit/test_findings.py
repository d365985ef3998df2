"""Findings on hand-made steps frames: knee, SLO, dominant latency part, quality, run status."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from analysis.finding_kinds import Finding, Kind, Severity
from analysis.findings import (
    Slo,
    best_under_slo,
    component_findings,
    dominant_components,
    falls_findings,
    parse_slo,
    quality_findings,
    saturation_knee,
    slo_findings,
    status_findings,
    step_findings,
)
from analysis.frames import latency_components
from loadgen.errors import ConfigError
from loadgen.results import RunStatus
from loadgen.storage import RunRecord

NAN = math.nan


def steps(*rows: dict[str, Any]) -> pd.DataFrame:
    """A steps frame with the columns findings read; rows give throughput, p99 (ms) and overrides."""
    records = []
    for i, row in enumerate(rows):
        p99_us = row.get("p99", NAN) * 1000.0
        record = {
            "step_index": i,
            "concurrency": 2**i,
            "throughput": 100.0,
            "lat_avg_us": p99_us * 0.8,
            "lat_p50_us": p99_us * 0.7,
            "lat_p90_us": p99_us * 0.9,
            "lat_p95_us": p99_us * 0.95,
            "lat_p99_us": p99_us,
            "server_queue_us": NAN,
            "server_compute_input_us": NAN,
            "server_compute_infer_us": NAN,
            "server_compute_output_us": NAN,
            "request_count": 300,
            "error_count": 0,
            "errors": {},
            "stable": True,
            "window_count": 3,
            "server_stats_reset": False,
        }
        record.update({k: v for k, v in row.items() if k != "p99"})
        records.append(record)
    return pd.DataFrame(records)


def split(avg_ms: float, queue: float, infer: float, cin: float = 0.0, cout: float = 0.0) -> dict[str, float]:
    """Server parts in ms -> the frame's microsecond columns."""
    return {
        "lat_avg_us": avg_ms * 1000,
        "server_queue_us": queue * 1000,
        "server_compute_input_us": cin * 1000,
        "server_compute_infer_us": infer * 1000,
        "server_compute_output_us": cout * 1000,
    }


# -- saturation knee --------------------------------------------------------------------------------
def test_knee_is_the_step_after_which_throughput_stops_growing_while_p99_rises() -> None:
    frame = steps(
        {"throughput": 100, "p99": 10},
        {"throughput": 180, "p99": 11},
        {"throughput": 185, "p99": 20},  # +2.8 % throughput, p99 up: step 1 is the knee
        {"throughput": 186, "p99": 40},
    )
    assert saturation_knee(frame) == 1
    (finding,) = step_findings(frame)[:1]
    assert finding.kind is Kind.KNEE and finding.step_index == 1
    assert "concurrency 2" in finding.text and "180.0 infer/s, at most 186.0" in finding.text


def test_no_knee_while_throughput_keeps_growing_or_latency_stays_flat() -> None:
    assert saturation_knee(steps({"throughput": 100, "p99": 10}, {"throughput": 200, "p99": 30})) is None
    plateau = steps(  # one flat step (noise), then throughput grows again: not saturated
        {"throughput": 100, "p99": 10},
        {"throughput": 102, "p99": 12},
        {"throughput": 200, "p99": 14},
    )
    assert saturation_knee(plateau) is None
    flat = steps({"throughput": 100, "p99": 10}, {"throughput": 101, "p99": 10})
    assert saturation_knee(flat) is None
    (finding,) = [f for f in step_findings(flat) if f.kind is Kind.KNEE]
    assert finding.step_index is None and "no saturation knee" in finding.text
    assert not [f for f in step_findings(steps({"p99": 10})) if f.kind is Kind.KNEE]  # one step: no claim


def test_knee_follows_concurrency_not_storage_order_and_skips_steps_without_latency() -> None:
    frame = steps(
        {"concurrency": 8, "throughput": 300, "p99": 30},
        {"concurrency": 1, "throughput": 100, "p99": 10},
        {"concurrency": 2, "throughput": 0, "p99": NAN},  # every request failed
        {"concurrency": 4, "throughput": 290, "p99": 20},
    )
    assert saturation_knee(frame) == 3  # 1 -> 4 grows, 4 -> 8 grows < 5 % while p99 rises


# -- latency objective ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("p99=50ms", Slo(50.0, 99)),
        ("50ms", Slo(50.0, 99)),
        ("p95=0.2s", Slo(200.0, 95)),
        ("P90 = 250us", Slo(0.25, 90)),
        ("50", Slo(50.0, 99)),
    ],
)
def test_parse_slo(text: str, expected: Slo) -> None:
    assert parse_slo(text) == expected


@pytest.mark.parametrize("text", ["p98=5ms", "fast", "0ms", "p99=", "50 min", "-5ms"])
def test_bad_slo_is_a_usage_error(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_slo(text)


def test_best_throughput_under_slo_skips_steps_with_errors() -> None:
    frame = steps(
        {"throughput": 100, "p99": 10},
        {"throughput": 190, "p99": 40},
        {"throughput": 250, "p99": 45, "error_count": 3, "errors": {"UNAVAILABLE": 3}},
        {"throughput": 260, "p99": 80},
    )
    assert best_under_slo(frame, Slo(50)) == 1
    (finding,) = slo_findings(frame, Slo(50))
    assert finding == Finding(Kind.SLO, Severity.INFO, finding.text, 1)
    assert "190.0 infer/s at concurrency 2" in finding.text and "p99 40.0 ms" in finding.text
    assert best_under_slo(frame, Slo(37, percentile=90)) == 1  # p90 = 0.9 x p99: 36 ms


def test_no_step_meets_the_slo_is_a_warning_naming_the_lowest_latency() -> None:
    frame = steps({"throughput": 100, "p99": 10}, {"throughput": 190, "p99": 40})
    assert best_under_slo(frame, Slo(5)) is None
    (finding,) = slo_findings(frame, Slo(5))
    assert finding.severity is Severity.WARNING and finding.step_index == 0
    assert "no error-free step meets p99 <= 5 ms" in finding.text and "10.0 ms" in finding.text


# -- where the time goes ----------------------------------------------------------------------------
def test_dominant_component_per_step_with_its_hint() -> None:
    frame = steps(
        {"p99": 12, **split(10, queue=0.1, infer=8)},  # model-bound
        {"p99": 50, **split(40, queue=30, infer=8)},  # queueing
        {"p99": 12, **split(10, queue=0.5, infer=1)},  # 8.5 ms outside the server
        {"p99": 12, **split(10, queue=0.5, infer=1, cin=6)},
        {"p99": 12},  # no server statistics: no claim
    )
    assert dominant_components(frame) == {0: "compute_infer", 1: "queue", 2: "client", 3: "compute_input"}
    found = component_findings(frame)
    assert [(f.step_index, f.component) for f in found] == [
        (0, "compute_infer"),
        (1, "queue"),
        (2, "client"),
        (3, "compute_input"),
    ]
    assert "the model itself is the bottleneck" in found[0].text
    assert "queue dominates: requests wait for a free instance or for the batcher" in found[1].text
    assert "30.0 ms of 40.0 ms (75%)" in found[1].text
    assert "the client or network is the bottleneck" in found[2].text


def test_neighbouring_loads_with_the_same_bottleneck_are_one_finding_read_at_the_highest_load() -> None:
    """Nine per-step lines buried the one that mattered."""
    frame = steps(
        {"p99": 5, **split(4, queue=0.1, infer=3)},
        {"p99": 6, **split(5, queue=0.2, infer=4)},
        {"p99": 20, **split(16, queue=9, infer=4)},
        {"p99": 40, **split(32, queue=24, infer=4)},
        {"p99": 80, **split(64, queue=56, infer=4)},
    )
    infer, queue = component_findings(frame)
    assert (infer.step_index, infer.component, queue.step_index, queue.component) == (
        1,
        "compute_infer",
        4,
        "queue",
    )
    assert infer.text.startswith(
        "concurrency 1 to 2: 75% to 80% of the mean latency (4 ms of 5 ms at concurrency 2)"
    )
    assert queue.text.startswith(
        "concurrency 4 to 16: 56% to 88% of the mean latency (56.0 ms of 64.0 ms at concurrency 16)"
    )


CONFIG_DYNAMIC = {
    "max_batch_size": 8,
    "dynamic_batching": {"max_queue_delay_microseconds": "500"},  # gRPC's JSON: int64 as a string
    "instance_group": [{"count": 2, "kind": "KIND_CPU"}],
}


def _queued(inferences: int, executions: int) -> pd.DataFrame:
    return steps(
        {
            "p99": 50,
            **split(40, queue=30, infer=8),
            "server_inference_count": inferences,
            "server_execution_count": executions,
        }
    )


@pytest.mark.parametrize(
    ("config", "inferences", "executions", "says", "never"),
    [
        # every batch full at max_batch_size: more batching cannot help, a bigger batch or instances can
        (
            CONFIG_DYNAMIC,
            800,
            100,
            "batches are full (average 8.0 of max_batch_size 8): raise max_batch_size "
            "or add instances (now 2)",
            "enable dynamic batching",
        ),
        # batches mostly empty: requests wait for the batcher's delay or a busy instance
        (
            CONFIG_DYNAMIC,
            200,
            100,
            "while batches average 2.0 of 8: requests wait for the batcher's "
            "max_queue_delay (500 us) or a busy instance: add instances (now 2) or lower "
            "max_queue_delay_microseconds; a larger max_batch_size would not help",
            "enable",
        ),
        (
            {"max_batch_size": 8, "instance_group": [{"count": 1}]},
            100,
            100,
            "dynamic batching is off: enable it (the model takes batches up to 8) or add instances (now 1)",
            "batches are full",
        ),
        (
            {"max_batch_size": 0},
            100,
            100,
            "the model cannot batch (max_batch_size 0): add instances",
            "dynamic batching",
        ),
        (
            {"max_batch_size": 4, "sequence_batching": {}},
            100,
            100,
            "requests wait for their sequence's slot",
            "dynamic batching",
        ),
    ],
)
def test_the_queue_hint_reads_the_models_config_and_the_batches_it_executed(
    config: dict[str, Any], inferences: int, executions: int, says: str, never: str
) -> None:
    (finding,) = component_findings(_queued(inferences, executions), config)
    assert finding.component == "queue"
    assert says in finding.text, finding.text
    assert never not in finding.text, finding.text


def test_the_infer_hint_mentions_batching_only_where_it_is_off_and_possible() -> None:
    model_bound = steps({"p99": 12, **split(10, queue=0.1, infer=8)})
    (off,) = component_findings(model_bound, {"max_batch_size": 8})
    assert "dynamic batching is off: it would run several requests per execution" in off.text
    for config in (CONFIG_DYNAMIC, {"max_batch_size": 0}, None):
        (finding,) = component_findings(model_bound, config)
        assert finding.text.endswith("the model itself is the bottleneck"), finding.text


def test_a_step_whose_throughput_falls_while_load_rises_is_flagged() -> None:
    frame = steps(
        {"p99": 5, "throughput": 500.0},
        {"p99": 6, "throughput": 1000.0},
        {"p99": 9, "throughput": 800.0},  # c=4 below c=2: flagged
        {"p99": 20, "throughput": 780.0},  # 2.5% below c=4: within noise
        {"p99": 30, "request_count": 0, "throughput": 0.0, "error_count": 5},  # only failures: errors say it
    )
    (fall,) = falls_findings(frame)
    assert (fall.kind, fall.severity, fall.step_index) == (Kind.THROUGHPUT_FALLS, Severity.WARNING, 2)
    assert "800.0 infer/s at concurrency 4, 20% below 1,000.0 at concurrency 2" in fall.text
    assert falls_findings(steps({"p99": 5, "throughput": 500.0}, {"p99": 6, "throughput": 490.0})) == []


def test_findings_are_ranked_what_makes_numbers_wrong_then_what_they_say_then_doubts() -> None:
    frame = steps(
        {"p99": 5, "throughput": 500.0, "metrics_failed_scrapes": 2, **split(4, queue=0.1, infer=3)},
        {"p99": 6, "throughput": 1000.0, "stable": False, **split(5, queue=0.2, infer=4)},
        {"p99": 90, "throughput": 700.0, "error_count": 3, "errors": {"INTERNAL: x": 3}},
    )
    kinds = [f.kind for f in step_findings(frame, Slo(50.0))]
    assert kinds == [
        Kind.ERRORS,
        Kind.SLO,
        Kind.KNEE,
        Kind.THROUGHPUT_FALLS,
        Kind.DOMINANT,
        Kind.UNSTABLE,
        Kind.METRICS_GAP,
    ]


def test_client_side_time_is_clamped_at_zero() -> None:
    frame = steps({"p99": 10, **split(5, queue=3, infer=4)})  # server parts exceed the client's mean
    parts = latency_components(frame)
    assert parts.loc[0, "client"] == 0.0
    assert parts.loc[0, "queue"] == 3000.0
    assert latency_components(steps({"p99": 10})).isna().all(axis=None)


# -- trust: errors, unstable steps, stats, run status -------------------------------------------------
def test_errors_unstable_steps_and_missing_stats_are_called_out() -> None:
    frame = steps(
        {"p99": 10, "error_count": 7, "errors": {"UNAVAILABLE: gone": 5, "INTERNAL: oops": 2}},
        {"p99": 10, "stable": False, "window_count": 10},
        {"p99": 10, "server_stats_reset": True},
    )
    found = quality_findings(frame)
    assert [(f.kind, f.severity, f.step_index) for f in found] == [
        (Kind.ERRORS, Severity.ERROR, 0),
        (Kind.UNSTABLE, Severity.WARNING, 1),
        (Kind.STATS_MISSING, Severity.WARNING, 2),
    ]
    assert "7 failed request(s): 5 x UNAVAILABLE: gone; 2 x INTERNAL: oops" in found[0].text
    assert "within 10 window(s)" in found[1].text


def test_a_step_that_only_failed_a_cut_step_and_a_metrics_gap_are_called_out() -> None:
    frame = steps(
        {"request_count": 0, "error_count": 9, "errors": {"INTERNAL: no": 9}},
        {"p99": 10, "interrupted": "cannot reach Triton at h:1 (gRPC): refused", "window_count": 2},
        {"p99": 10, "metrics_failed_scrapes": 4},
    )
    found = quality_findings(frame)
    assert [(f.kind, f.severity, f.step_index) for f in found] == [
        (Kind.ERRORS, Severity.ERROR, 0),
        (Kind.INTERRUPTED, Severity.ERROR, 1),
        (Kind.METRICS_GAP, Severity.WARNING, 2),
    ]
    assert "every one of its 9 requests failed, so its numbers describe failures" in found[0].text
    assert "cut short" in found[1].text and "2 window(s) before" in found[1].text
    assert "4 scrape(s) of the metrics endpoint failed" in found[2].text


def _run(status: RunStatus, step_count: int, error: str | None = None) -> RunRecord:
    now = datetime.now(UTC)
    return RunRecord(
        id=7,
        model="m",
        model_version="1",
        scenario="concurrency",
        status=status,
        error=error,
        server_url="localhost:8001",
        started_at=now,
        ended_at=None if status is RunStatus.RUNNING else now,
        settings={},
        model_config={},
        model_metadata={},
        server_metadata={},
        host={},
        labels={},
        step_count=step_count,
    )


def test_runs_that_did_not_complete_are_called_out_first() -> None:
    assert status_findings(_run(RunStatus.COMPLETED, 3)) == []
    (failed,) = status_findings(_run(RunStatus.FAILED, 2, "server lost mid-run: boom"))
    assert failed.severity is Severity.ERROR and "server lost mid-run: boom" in failed.text
    assert "2 finished step(s)" in failed.text
    (interrupted,) = status_findings(_run(RunStatus.INTERRUPTED, 1))
    assert interrupted.severity is Severity.WARNING and "interrupted" in interrupted.text
    running, empty = status_findings(_run(RunStatus.RUNNING, 0))
    assert running.kind is Kind.STATUS and "still running" in running.text
    assert empty.kind is Kind.NO_STEPS and empty.severity is Severity.ERROR


def test_findings_are_frozen() -> None:
    finding = Finding(Kind.KNEE, Severity.INFO, "x", 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        finding.text = "y"  # type: ignore[misc]


def test_a_part_under_half_the_latency_is_called_the_largest_not_dominant() -> None:
    (finding,) = component_findings(steps({"p99": 12, **split(10, queue=3, infer=3.2)}))
    assert finding.component == "client" and "(38%)" in finding.text
    assert "client-side time is the largest part: the client or network" in finding.text


def test_a_decoupled_model_gets_no_breakdown_hint() -> None:
    """Its execute() returns at once: Triton's compute covers none of the stream."""
    frame = steps({"p99": 120, **split(120, queue=0.1, infer=0.2)})
    (finding,) = component_findings(frame, {"model_transaction_policy": {"decoupled": True}})
    assert "no latency breakdown for a decoupled model" in finding.text
    assert "bottleneck" not in finding.text


def test_a_step_the_server_answered_more_requests_in_is_shared_and_gets_no_breakdown() -> None:
    """Triton's stats are per model: another client's requests would show as this run's queue."""
    frame = steps(
        {"p99": 12, **split(10, queue=2, infer=8), "server_success_count": 305},  # window edges: its own
        {"p99": 90, **split(80, queue=30, infer=10), "server_success_count": 1086},  # another class too
        {"p99": 95, **split(85, queue=30, infer=10), "server_success_count": 990},
    )
    assert dominant_components(frame) == {0: "compute_infer"}
    found = step_findings(frame)
    (shared,) = [f for f in found if f.kind is Kind.SHARED_MODEL]
    assert shared.severity is Severity.WARNING and shared.step_index == 1
    assert shared.text.startswith(
        "concurrency 2: the server answered 1086 requests of this model while this run got 300"
    )
    assert (
        "(and 1 more step(s) like it)" in shared.text and "another client loads the model too" in shared.text
    )
    assert [f.step_index for f in found if f.kind is Kind.DOMINANT] == [0]


def test_an_open_loop_sender_that_fell_behind_or_sent_late_is_called_out() -> None:
    frame = steps(
        {"request_rate": 1000.0, "send_rate": 1000.0, "send_lag_p99_us": 12.0, "behind_schedule": False},
        {"request_rate": 40000.0, "send_rate": 40000.0, "send_lag_p99_us": 131.0, "behind_schedule": False},
        {
            "request_rate": 64000.0,
            "send_rate": 61000.0,
            "send_lag_p99_us": 9000.0,
            "behind_schedule": True,
            "refused_count": 12,
        },
        {"p99": 5.0},  # a closed-loop step has no sender of its own to judge
    )
    found = [f for f in step_findings(frame) if f.kind in (Kind.BEHIND_SCHEDULE, Kind.LATE_SENDS)]
    assert [(f.kind, f.step_index) for f in found] == [(Kind.BEHIND_SCHEDULE, 2), (Kind.LATE_SENDS, 1)]
    assert "61,000 req/s" in found[0].text and "12 sends refused" in found[0].text
    assert "131 us late" in found[1].text and "mean gap is 25 us" in found[1].text
