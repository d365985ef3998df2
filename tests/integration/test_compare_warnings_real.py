"""``loadgen compare``'s setting warnings and noise on runs measured against the real embedded Triton.

Only deterministic things are asserted: which settings differ (the server's model config as
its gRPC and HTTP APIs give it must compare equal), and that each step's noise is read from
the windows a real run stores.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from analysis import load_comparison
from analysis.differences import SettingDifference
from loadgen.config import MeasurementSettings, SweepSettings
from loadgen.results import RunStatus
from loadgen.runner import execute_sweep
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore
from tests.cli import loadgen_here

QUICK = MeasurementSettings(
    measurement_interval_ms=300, warmup_ms=100, stability_percentage=50, max_windows=3
)


@dataclass(frozen=True)
class Runs:
    db: str
    grpc: int
    http: int
    batched: int


@pytest.fixture(scope="module")
def runs(triton: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    """identity at concurrency 1: over gRPC, over HTTP, and over gRPC with batches of 4."""
    db = f"sqlite:///{tmp_path_factory.mktemp('compare_warnings') / 'runs.db'}"
    grpc = SweepSettings(
        model="identity", levels=(1,), url=triton.grpc_url, metrics_url="", measurement=QUICK
    )
    variants = [grpc, replace(grpc, url=triton.http_url, protocol="http"), replace(grpc, batch_size=4)]
    ids = []
    with RunStore(db) as store:
        for settings in variants:
            outcome = asyncio.run(execute_sweep(settings, store))
            assert outcome.status is RunStatus.COMPLETED
            ids.append(outcome.run_id)
    yield Runs(db, *ids)


def test_grpc_and_http_runs_differ_in_protocol_only(runs: Runs) -> None:
    with RunStore(runs.db) as store:
        grpc, http = store.get_run(runs.grpc), store.get_run(runs.http)
        assert grpc.model_config != http.model_config  # HTTP writes the defaults gRPC leaves out
        comparison = load_comparison(store, runs.grpc, runs.http)
    assert comparison.setting_differences == (SettingDifference("protocol", "grpc", "http"),)


def test_a_different_batch_size_is_warned_about_before_the_table(runs: Runs) -> None:
    result = loadgen_here("compare", str(runs.grpc), str(runs.batched), "--db", runs.db)
    assert result.returncode in (0, 1), result.stderr
    assert (
        f"loadgen: warning: the runs differ in batch size: 1 (run {runs.grpc}) vs 4 (run {runs.batched}): "
        "the comparison may not be like for like"
    ) in result.stderr.splitlines()
    assert "CI / noise" in result.stdout and "verdict: " in result.stdout and "decided: " in result.stdout


def test_a_real_steps_noise_comes_from_its_windows(runs: Runs) -> None:
    result = loadgen_here("compare", str(runs.grpc), str(runs.grpc), "--json", "--db", runs.db)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["verdict"] == "pass" and data["setting_differences"] == [] and data["warnings"] == []
    (step,) = data["steps"]
    for metric in ("throughput", "latency"):
        noise = step["noise_pct"][metric]
        assert noise["base"] == noise["new"] is not None and 0 <= noise["base"] <= 50  # stable within 50%
        assert noise["combined"] == pytest.approx(noise["base"] * 2**0.5)
