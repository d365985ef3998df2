"""Worker-merge correctness without processes: what crosses the pipe and how windows merge."""

from __future__ import annotations

import pickle

import numpy as np

from loadgen.engine.recorder import OpenWindow, Window, merge_windows
from loadgen.engine.workers import default_workers, split_evenly
from loadgen.histogram import LatencyHistogram
from loadgen.tallies import ValidationTally


def test_the_merged_histogram_of_n_workers_equals_the_histogram_of_all_their_samples() -> None:
    rng = np.random.default_rng(3)
    samples = [rng.lognormal(7, 1.2, size=5000) * 1000 for _ in range(4)]  # ns, 4 workers
    everything = Window()
    workers = []
    for part in samples:
        window = Window()
        for ns in part.astype(np.int64).tolist():
            window.record(ns)
            everything.record(ns)
        window.error("UNAVAILABLE: x")
        workers.append(pickle.loads(pickle.dumps(window)))  # as it crosses the pipe
    merged = merge_windows(workers)
    assert merged.histogram == everything.histogram
    assert merged.histogram.count == merged.requests == 20_000
    assert merged.histogram.mean_us == everything.histogram.mean_us
    for p in (50, 90, 99, 99.9, 100):
        assert merged.histogram.percentile_us(p) == everything.histogram.percentile_us(p)
    assert merged.errors == {"UNAVAILABLE: x": 4}
    assert type(merged) is Window


def test_open_windows_merge_every_counter_and_histogram() -> None:
    parts = []
    for k in range(3):
        w = OpenWindow()
        w.record_open(1_000_000 * (k + 1), 500_000)
        w.record_send(1000 * (k + 1))
        w.refuse()
        w.due = 5
        w.validation = ValidationTally(checked=1, mismatched=k, max_abs_diff=float(k))
        parts.append(pickle.loads(pickle.dumps(w)))
    merged = merge_windows([*parts, Window()])  # an idle worker's empty closed window
    assert isinstance(merged, OpenWindow)
    assert (merged.requests, merged.sent, merged.refused, merged.due) == (3, 3, 3, 15)
    assert merged.service.count == 3 and merged.lag.max_us == 3.0
    assert merged.validation == ValidationTally(checked=3, mismatched=3, max_abs_diff=2.0)


def test_a_pickled_histogram_is_the_encoded_one() -> None:
    h = LatencyHistogram()
    h.record_many_us([1.0, 10.0, 1e9])  # one overflow
    blob = pickle.dumps(h)
    assert len(blob) < 1000  # not 17,408 counters
    back = pickle.loads(blob)
    assert back == h and back.overflow == 1 and back.sum_us == h.sum_us


def test_split_and_default_worker_counts() -> None:
    assert split_evenly(8, 3) == [3, 3, 2]
    assert split_evenly(1, 2) == [1, 0]
    assert default_workers([1, 256], open_loop=False, cpu_count=2) == 1  # this CI machine
    assert default_workers([1, 256], open_loop=False, cpu_count=16) == 8
    assert default_workers([1, 8], open_loop=False, cpu_count=16) == 1
    assert default_workers([10_000.0], open_loop=True, cpu_count=16) == 5
