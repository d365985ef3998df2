"""The tables users compare against: NVIDIA's ResNeXt101 benchmark table and perf_analyzer's CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

LEVEL = "Concurrent requests"


def latency_table(steps: pd.DataFrame) -> pd.DataFrame:
    """Concurrency | Throughput | Avg | p90 | p95 | p99 (ms), plus server queue and compute infer (ms)."""
    ms = 1.0 / 1000.0
    return pd.DataFrame(
        {
            LEVEL: steps["concurrency"],
            "Throughput (infer/s)": steps["throughput"],
            "Avg latency (ms)": steps["lat_avg_us"] * ms,
            "p90 latency (ms)": steps["lat_p90_us"] * ms,
            "p95 latency (ms)": steps["lat_p95_us"] * ms,
            "p99 latency (ms)": steps["lat_p99_us"] * ms,
            "Server queue (ms)": steps["server_queue_us"] * ms,
            "Compute infer (ms)": steps["server_compute_infer_us"] * ms,
            "Errors": steps["error_count"],
            "Stable": steps["stable"],
        }
    )


PERF_ANALYZER_COLUMNS = (
    "Concurrency",
    "Inferences/Second",
    "Client Send",
    "Network+Server Send/Recv",
    "Server Queue",
    "Server Compute Input",
    "Server Compute Infer",
    "Server Compute Output",
    "Client Recv",
    "p50 latency",
    "p90 latency",
    "p95 latency",
    "p99 latency",
)


def perf_analyzer_frame(steps: pd.DataFrame) -> pd.DataFrame:
    """perf_analyzer's ``-f`` CSV columns first (microseconds, its order), then ours.

    Client Send and Client Recv are 0: requests are serialized once before the run and
    responses are not deserialized. Network+Server Send/Recv is the mean latency minus the
    server's queue and compute times, clamped at 0, as perf_analyzer computes it.
    Rows stay in load order (perf_analyzer sorts by throughput).
    """
    server = (
        steps["server_queue_us"].fillna(0)
        + steps["server_compute_input_us"].fillna(0)
        + steps["server_compute_infer_us"].fillna(0)
        + steps["server_compute_output_us"].fillna(0)
    )
    network = np.maximum(steps["lat_avg_us"] - server, 0.0)
    frame = pd.DataFrame(
        {
            "Concurrency": steps["concurrency"],
            "Inferences/Second": steps["throughput"],
            "Client Send": 0,
            "Network+Server Send/Recv": network,
            "Server Queue": steps["server_queue_us"],
            "Server Compute Input": steps["server_compute_input_us"],
            "Server Compute Infer": steps["server_compute_infer_us"],
            "Server Compute Output": steps["server_compute_output_us"],
            "Client Recv": 0,
            "p50 latency": steps["lat_p50_us"],
            "p90 latency": steps["lat_p90_us"],
            "p95 latency": steps["lat_p95_us"],
            "p99 latency": steps["lat_p99_us"],
            "Avg latency": steps["lat_avg_us"],
            "Std latency": steps["lat_std_us"],
            "Min latency": steps["lat_min_us"],
            "Max latency": steps["lat_max_us"],
            "Request Count": steps["request_count"],
            "Errors": steps["error_count"],
            "Stable": steps["stable"],
            "Trials": steps["trials"],
            "Duration (s)": steps["duration_s"],
        }
    )
    latency_columns = [
        c for c in frame.columns if c.endswith("latency") or c.startswith(("Server", "Network"))
    ]
    frame[latency_columns] = frame[latency_columns].round().astype("Int64")
    return frame


def write_perf_analyzer_csv(steps: pd.DataFrame, path: Path | str) -> None:
    perf_analyzer_frame(steps).to_csv(path, index=False)
