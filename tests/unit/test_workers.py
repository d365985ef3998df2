"""Worker-merge correctness without processes: what crosses the pipe and how windows merge."""

from __future__ import annotations

import pickle
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from loadgen.config import SweepSettings
from loadgen.descriptors import connections_needed, ensure_descriptors
from loadgen.distributed.ray_pool import ORIGIN_LEAD_NS, RayPool
from loadgen.engine.clocks import ClockOffset, best_offset
from loadgen.engine.recorder import OpenWindow, Window, merge_windows
from loadgen.engine.schedules import Schedule
from loadgen.engine.worker_engine import OpenShare, WorkerSetup, split_evenly
from loadgen.engine.workers import connections_per_worker, default_workers
from loadgen.errors import ConfigError
from loadgen.histogram import LatencyHistogram
from loadgen.results import clock_too_uncertain
from loadgen.storage import RunStore
from loadgen.tallies import ValidationTally
from loadgen.transports.grpc_codec import channel_index
from tests.cli import free_port, loadgen_here, one_line_error


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
    # the sums are floats, added in another order
    assert merged.histogram.mean_us == pytest.approx(everything.histogram.mean_us, rel=1e-12)
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


def test_a_clock_offset_comes_from_the_shortest_round_trip() -> None:
    # (sent, remote, received) on the coordinator's clock and the worker's: the worker runs 5 ms ahead
    samples = [(0, 5_000_900, 2_000), (10_000, 5_010_200, 10_400), (20_000, 5_021_000, 23_000)]
    clock = best_offset(samples)
    assert clock == ClockOffset(offset_ns=5_000_000, uncertainty_ns=200)
    with pytest.raises(ValueError, match="before it was sent"):
        best_offset([(10, 0, 5)])
    # half the mean gap between sends is the bound: 1000 req/s -> 0.5 ms
    assert not clock_too_uncertain(400.0, 1000.0) and clock_too_uncertain(600.0, 1000.0)
    assert not clock_too_uncertain(1e9, 0.0)


def test_without_ray_the_option_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: import raises ImportError
    result = loadgen_here(
        "sweep", "-m", "identity", "-u", "127.0.0.1:1", "--ray", "auto", "--db", "sqlite://"
    )
    assert result.returncode == 2
    assert "--ray needs Ray, which is not installed here: pip install 'loadgen[ray]'" in one_line_error(
        result
    )
    listed = loadgen_here("workers", "--ray", "auto")
    assert listed.returncode == 2 and "pip install 'loadgen[ray]'" in one_line_error(listed)


def test_a_ray_address_that_nothing_answers_is_refused_before_anything_runs(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    port = free_port()
    result = loadgen_here(
        "sweep", "-m", "identity", "-u", "127.0.0.1:1", "--ray", f"127.0.0.1:{port}", "--db", db
    )
    assert result.returncode == 2
    assert f"--ray 127.0.0.1:{port}: no Ray cluster answers there" in one_line_error(result)
    with RunStore(db) as store:
        assert store.list_runs() == []  # refused before a run was recorded


def test_each_actor_starts_the_shared_schedule_at_the_drivers_instant_read_on_its_own_clock() -> None:
    pool = RayPool(2, WorkerSetup(protocol="grpc", url="x:1", requests=()), "x:1")
    pool.clocks = [ClockOffset(5_000_000, 100), ClockOffset(-3_000_000, 100)]  # 5 ms ahead, 3 ms behind
    before = time.time_ns()
    (ahead, on_wall), (behind, _) = pool.origins()
    after = time.time_ns()
    assert on_wall and ahead - behind == 8_000_000
    assert before + ORIGIN_LEAD_NS + 5_000_000 <= ahead <= after + ORIGIN_LEAD_NS + 5_000_000
    # on the actor, that wall-clock instant becomes the same moment on its monotonic clock
    share = OpenShare(Schedule(rate=100.0), 2, 0, time.time_ns() + 50_000_000, 8, wall_clock=True)
    assert abs(share.local_origin_ns() - (time.perf_counter_ns() + 50_000_000)) < 5_000_000
    local = OpenShare(Schedule(rate=100.0), 2, 0, 123, 8)  # one host's workers: monotonic as given
    assert local.local_origin_ns() == 123


def test_max_connections_is_shared_by_the_workers_and_deals_slots_round_robin() -> None:
    settings = SweepSettings(model="m", levels=(1,), max_connections=5)
    assert [connections_per_worker(settings, w) for w in (1, 2, 5, 8)] == [5, 3, 1, 1]
    assert connections_per_worker(SweepSettings(model="m", levels=(1,)), 4) is None
    assert [channel_index(slot, 64, 3) for slot in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert [channel_index(slot, 64, None) for slot in (0, 63, 64, 200)] == [0, 0, 1, 3]


def test_a_sweep_asks_for_the_descriptors_its_connections_need() -> None:
    http = SweepSettings(model="m", levels=(1, 4096), protocol="http")
    grpc = SweepSettings(model="m", levels=(10_000,))
    assert connections_needed(http) == 4096
    assert connections_needed(grpc) == 157  # 64 slots a connection
    assert connections_needed(SweepSettings(model="m", levels=(10_000,), max_connections=16)) == 16
    assert connections_needed(SweepSettings(model="m", levels=(500.0,), scenario="request_rate")) == 16
    assert connections_needed(http, workers=8) == 512  # a limit is per process: each worker's part
    limits = {"now": (256, 512)}  # (soft, hard) as getrlimit reports them

    def getrlimit(_which: int) -> tuple[int, int]:
        return limits["now"]

    def setrlimit(_which: int, value: tuple[int, int]) -> None:
        limits["now"] = value

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(resource, "getrlimit", getrlimit)
        patch.setattr(resource, "setrlimit", setrlimit)
        limits["now"] = (256, 512)
        with pytest.raises(ConfigError, match="4096 connections need about 4352 file descriptors"):
            ensure_descriptors(http, 1)
        assert limits["now"] == (256, 512)  # left as it was
        limits["now"] = (256, 8192)
        ensure_descriptors(http, 1)
        assert limits["now"] == (4352, 8192)  # raised as far as needed, no further
        ensure_descriptors(grpc, 1)
        assert limits["now"] == (4352, 8192)  # never lowered
