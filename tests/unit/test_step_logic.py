import math

from loadgen.engine.step import is_stable
from loadgen.results import BatchStat, DurationStat, WindowResult
from loadgen.scrape.server_api import parse_model_stats


def _w(throughput: float, latency_us: float) -> WindowResult:
    return WindowResult(
        duration_s=1.0,
        request_count=int(throughput),
        inference_count=int(throughput),
        error_count=0,
        mean_latency_us=latency_us,
    )


def test_stable_needs_three_windows_within_percentage_of_mean() -> None:
    assert not is_stable([_w(100, 10), _w(100, 10)], 10)
    assert is_stable([_w(1000, 10), _w(100, 10), _w(105, 10.5), _w(98, 9.8)], 10)
    assert not is_stable([_w(100, 10), _w(130, 10), _w(100, 10)], 10)  # throughput off by > 10 %
    assert not is_stable([_w(100, 10), _w(100, 14), _w(100, 10)], 10)  # latency off
    assert not is_stable([_w(100, 10), _w(0, math.nan), _w(100, 10)], 10)


GRPC_JSON = {  # gRPC's JSON form: int64 as strings, zero fields omitted
    "name": "identity",
    "version": "1",
    "inference_count": "40",
    "execution_count": "10",
    "inference_stats": {
        "success": {"count": "40", "ns": "4000000"},
        "queue": {"count": "40", "ns": "800000"},
        "compute_infer": {"count": "40", "ns": "2000000"},
        "fail": {},
    },
    "batch_stats": [
        {
            "batch_size": "4",
            "compute_infer": {"count": "10", "ns": "500000"},
            "compute_input": {"count": "10"},
        },
    ],
}


def test_parse_model_stats_from_grpc_json() -> None:
    stats = parse_model_stats(GRPC_JSON)
    assert stats.inference_count == 40
    assert stats.success == DurationStat(40, 4_000_000)
    assert stats.fail == DurationStat()
    assert stats.queue.avg_us == 20.0
    assert stats.batch_stats == (
        BatchStat(4, DurationStat(10, 0), DurationStat(10, 500_000), DurationStat()),
    )


def test_delta_and_reset_detection() -> None:
    before = parse_model_stats(GRPC_JSON)
    later = dict(GRPC_JSON, inference_count="60", execution_count="15")
    later["batch_stats"] = [
        {
            "batch_size": "4",
            "compute_infer": {"count": "13", "ns": "650000"},
            "compute_input": {"count": "13"},
        },
        {"batch_size": "1", "compute_infer": {"count": "2", "ns": "20000"}},
    ]
    delta = parse_model_stats(later) - before
    assert (delta.inference_count, delta.execution_count) == (20, 5)
    assert {b.batch_size: b.execution_count for b in delta.batch_stats} == {1: 2, 4: 3}
    assert not delta.went_down()
    assert (before - parse_model_stats(later)).went_down()  # counters went down: a reload
    assert (before + before).inference_count == 80


def test_metric_names_are_kept_as_exposed() -> None:
    from loadgen.scrape.metrics import parse_metrics

    text = (
        "# HELP nv_inference_count Number of inferences\n# TYPE nv_inference_count counter\n"
        'nv_inference_count{model="identity",version="1"} 42\n'
        "# HELP nv_energy_total J\n# TYPE nv_energy_total counter\nnv_energy_total 3.5\n"
        "# HELP nv_cpu_utilization CPU\n# TYPE nv_cpu_utilization gauge\nnv_cpu_utilization 0.25\n"
        "# HELP other_metric x\n# TYPE other_metric gauge\nother_metric 1\n"
    )
    samples = parse_metrics(text, 100.0)
    assert [(s.name, s.labels, s.value) for s in samples] == [
        ("nv_inference_count", {"model": "identity", "version": "1"}, 42.0),
        ("nv_energy_total", {}, 3.5),
        ("nv_cpu_utilization", {}, 0.25),
    ]
    assert all(s.timestamp == 100.0 for s in samples)


def test_half_recorded_execution_is_inconsistent() -> None:
    stats = parse_model_stats(GRPC_JSON)
    assert stats.is_consistent()  # 10 executions of batch 4 = 40 inferences
    torn = parse_model_stats(dict(GRPC_JSON, execution_count="11", inference_count="41"))
    assert not torn.is_consistent()


def test_metric_families_named_by_the_user_are_kept_beside_triton_s() -> None:
    from loadgen.scrape.metrics import family_filter, parse_metrics

    text = (
        "# HELP nv_cpu_utilization CPU\n# TYPE nv_cpu_utilization gauge\nnv_cpu_utilization 0.25\n"
        "# HELP custom_seen_total seen\n# TYPE custom_seen_total counter\n"
        'custom_seen_total{model="m"} 8\n'
        "# HELP custom_mean mean\n# TYPE custom_mean gauge\ncustom_mean 2.5\n"
        "# HELP other_custom x\n# TYPE other_custom gauge\nother_custom 1\n"
    )
    kept = parse_metrics(text, 1.0, family_filter(["custom_.*"]))
    assert [(s.name, s.value) for s in kept] == [
        ("nv_cpu_utilization", 0.25),
        ("custom_seen_total", 8.0),  # a counter exposed with _total keeps it
        ("custom_mean", 2.5),
    ]
    assert [s.name for s in parse_metrics(text, 1.0)] == ["nv_cpu_utilization"]  # nv_* only by default
    assert [s.name for s in parse_metrics(text, 1.0, family_filter(["custom"]))] == ["nv_cpu_utilization"]


def test_a_step_stores_its_top_reasons_and_counts_the_rest() -> None:
    import asyncio

    from loadgen.config import MeasurementSettings
    from loadgen.engine.recorder import Window
    from loadgen.engine.step import measure_step
    from loadgen.results import KEPT_REASONS, OTHER_REASONS, top_reasons

    class ManyWaysToFail:
        """A load whose every window fails 50 distinct ways (reason n: n + 1 times)."""

        level = concurrency = 1

        def start(self) -> None:
            pass

        def mark(self) -> None:
            pass

        async def cut(self) -> Window:
            window = Window()
            for n in range(50):
                for _ in range(n + 1):
                    window.error(f"INTERNAL: failure {n}")
            return window

        async def stop(self) -> int:
            return 0

    settings = MeasurementSettings(measurement_interval_ms=50, warmup_ms=0, max_windows=3)
    step = asyncio.run(measure_step(0, ManyWaysToFail(), settings, batch_size=1))  # type: ignore[arg-type]
    assert len(step.errors) == KEPT_REASONS + 1
    assert step.error_count == 3 * sum(range(1, 51))  # nothing lost from the total
    assert step.errors["INTERNAL: failure 49"] == 150 and "INTERNAL: failure 0" not in step.errors
    assert step.errors[OTHER_REASONS] == 3 * sum(range(1, 51 - KEPT_REASONS))
    assert top_reasons({"a": 1, "b": 2}) == {"a": 1, "b": 2}
