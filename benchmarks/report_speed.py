"""How long the HTML report of a 9-step run takes, and how big it is (targets: < 2 s, < 5 MB).

    python benchmarks/report_speed.py                       # a synthetic 9-step run, no server needed
    python benchmarks/report_speed.py --db URL --run ID     # a stored run

The synthetic run is shaped like a real identity sweep (1..256): 60 000 latencies per step,
dynamic batching up to 64, every metric a 2-CPU host exposes scraped each second.
Times are in-process (imports excluded), best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from analysis.frames import load_run_data
from analysis.report import build_report, write_report
from loadgen.histogram import LatencyHistogram
from loadgen.results import (
    BatchStat,
    DurationStat,
    MetricSample,
    ModelStats,
    RunInfo,
    RunStatus,
    StepResult,
    WindowResult,
)
from loadgen.storage import RunStore

LEVELS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
METRICS = (
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_request_success",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_pending_request_count",
)
HOST_METRICS = ("nv_cpu_utilization", "nv_cpu_memory_used_bytes", "nv_cpu_memory_total_bytes")


def _d(count: int, us: float) -> DurationStat:
    return DurationStat(count, int(count * us * 1000))


def _step(index: int, concurrency: int, start: datetime, rng: np.random.Generator) -> StepResult:
    mean_us = 700.0 * concurrency**0.8
    latencies = rng.lognormal(math.log(mean_us), 0.35, 60_000)
    histogram = LatencyHistogram()
    histogram.record_many_us(latencies)
    requests = latencies.size
    sizes = np.arange(1, min(64, concurrency) + 1)
    weights = np.exp(-sizes / max(concurrency / 8, 1.0))
    executions = np.maximum((requests / sizes.mean() * weights / weights.sum()).astype(int), 1)
    batches = tuple(
        BatchStat(int(b), _d(int(n), 20.0), _d(int(n), 150.0 + 5 * b), _d(int(n), 15.0))
        for b, n in zip(sizes, executions, strict=True)
    )
    stats = ModelStats(
        inference_count=requests,
        execution_count=int(executions.sum()),
        success=_d(requests, mean_us * 0.4),
        fail=DurationStat(),
        queue=_d(requests, mean_us * 0.1),
        compute_input=_d(requests, 20.0),
        compute_infer=_d(requests, 180.0),
        compute_output=_d(requests, 15.0),
        cache_hit=DurationStat(),
        cache_miss=DurationStat(),
        batch_stats=batches,
    )
    t0 = start.timestamp()
    samples = [
        MetricSample(t0 + s, name, {"model": model, "version": "1"}, float(rng.integers(0, 1000)))
        for s in range(4)
        for name in METRICS
        for model in ("identity", "fixed_latency", "resnet")
    ] + [MetricSample(t0 + s, name, {}, float(rng.random())) for s in range(4) for name in HOST_METRICS]
    windows = [WindowResult(1.0, requests // 3, requests // 3, 0, mean_us) for _ in range(3)]
    return StepResult(
        index=index,
        concurrency=concurrency,
        started_at=start,
        duration_s=3.0,
        request_count=requests,
        inference_count=requests,
        histogram=histogram,
        stable=True,
        window_count=3,
        windows=windows,
        server_stats=stats,
        metrics=samples,
    )


def synthetic_run(db: str) -> int:
    rng = np.random.default_rng(0)
    start = datetime.now(UTC)
    measurement = {"measurement_interval_ms": 1000, "warmup_ms": 300, "max_trials": 6}
    info = RunInfo(
        settings={"levels": list(LEVELS), "batch_size": 1, "measurement": measurement},
        model="identity",
        model_version="1",
        scenario="concurrency",
        server_url="localhost:8001",
        model_config={"backend": "python", "max_batch_size": 64, "dynamic_batching": {}},
        model_metadata={},
        server_metadata={"version": "2.51.0"},
        host={},
        started_at=start,
        labels={"purpose": "benchmark"},
    )
    with RunStore(db) as store:
        run_id = store.create_run(info)
        for index, level in enumerate(LEVELS):
            store.add_step(run_id, _step(index, level, start + timedelta(seconds=3.5 * index), rng))
        store.finish_run(run_id, RunStatus.COMPLETED)
    return run_id


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default=None, help="a loadgen database (default: a synthetic run)")
    parser.add_argument("--run", type=int, default=None, help="with --db: the run to report")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        run_id = args.run if args.run is not None else synthetic_run(db)
        out = Path(tmp) / "report.html"
        best: tuple[float, float, float] | None = None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            data = load_run_data(db, run_id)
            t1 = time.perf_counter()
            report = build_report([data])
            t2 = time.perf_counter()
            write_report(report, out)
            t3 = time.perf_counter()
            times = (t1 - t0, t2 - t1, t3 - t2)
            if best is None or sum(times) < sum(best):
                best = times
        assert best is not None
        size = out.stat().st_size
        print(
            f"run {run_id}: {len(data.steps)} steps, {len(report.figures)} figures: "
            f"{sum(best):.2f} s (read {best[0]:.2f}, build {best[1]:.2f}, write {best[2]:.2f}), "
            f"{size / 1e6:.2f} MB ({size} bytes)"
        )


if __name__ == "__main__":
    main()
