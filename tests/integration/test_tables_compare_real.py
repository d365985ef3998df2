"""``loadgen table`` and ``loadgen compare`` on runs measured against the real embedded Triton.

Only deterministic things are asserted: table numbers equal the stored steps and their
histograms, a run compared with itself passes with zero deltas, and identity (~1000+
infer/s) against fixed_latency (~100 infer/s by construction) is a clear regression.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from analysis import benchmark_table
from loadgen.config import MeasurementSettings, SweepSettings
from loadgen.results import RunStatus
from loadgen.runner import execute_sweep
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore
from tests.cli import loadgen_here, one_line_error

FAST = MeasurementSettings(measurement_interval_ms=500, warmup_ms=200, max_windows=3)


@dataclass(frozen=True)
class Runs:
    db: str
    identity: int
    fixed_latency: int


@pytest.fixture(scope="module")
def runs(triton: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    """One identity and one fixed_latency run at concurrency 1 and 2, measured once for the module."""
    db = f"sqlite:///{tmp_path_factory.mktemp('tables') / 'runs.db'}"
    ids = []
    with RunStore(db) as store:
        for model in ("identity", "fixed_latency"):
            settings = SweepSettings(
                model=model, levels=(1, 2), url=triton.grpc_url, metrics_url="", measurement=FAST
            )
            outcome = asyncio.run(execute_sweep(settings, store))
            assert outcome.status is RunStatus.COMPLETED
            ids.append(outcome.run_id)
    yield Runs(db, *ids)


def test_table_numbers_are_the_stored_steps(runs: Runs) -> None:
    with RunStore(runs.db) as store:
        steps = store.steps(runs.identity)
    table = benchmark_table(steps, scenario="concurrency")
    assert table["Concurrent requests"].tolist() == [1, 2]
    for row, step in zip(table.to_dict("records"), steps, strict=True):
        hist = step.histogram()
        assert step.lat_p99_us is not None and step.lat_p90_us is not None and step.lat_avg_us is not None
        assert row["Throughput (infer/s)"] == step.throughput
        assert row["p99 latency (ms)"] == hist.percentile_us(99) / 1000 == step.lat_p99_us / 1000
        assert row["p90 latency (ms)"] == step.lat_p90_us / 1000
        assert row["Avg latency (ms)"] == pytest.approx(step.lat_avg_us / 1000)

    result = loadgen_here(
        "table", str(runs.identity), "--format", "csv", "--percentiles", "50,99.9", "--db", runs.db
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [int(r["Concurrent requests"]) for r in rows] == [1, 2]
    for row, step in zip(rows, steps, strict=True):
        hist = step.histogram()
        assert float(row["Throughput (infer/s)"]) == pytest.approx(step.throughput, rel=1e-12)
        assert float(row["p50 latency (ms)"]) == pytest.approx(hist.percentile_us(50) / 1000, rel=1e-12)
        assert float(row["p99.9 latency (ms)"]) == pytest.approx(hist.percentile_us(99.9) / 1000, rel=1e-12)

    markdown = loadgen_here("table", str(runs.identity), "--db", runs.db)
    assert markdown.returncode == 0 and markdown.stdout.startswith("| Concurrent requests |")
    assert len(markdown.stdout.splitlines()) == 4


def test_hgrm_of_a_real_step(runs: Runs, tmp_path: Path) -> None:
    out = tmp_path / "c2.hgrm"
    result = loadgen_here("table", str(runs.identity), "--hgrm", "1", "-o", str(out), "--db", runs.db)
    assert result.returncode == 0, result.stderr
    with RunStore(runs.db) as store:
        step = store.steps(runs.identity)[1]
    hist = step.histogram()
    lines = out.read_text().splitlines()
    assert lines[0].split() == ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    rows = [line.split() for line in lines[2:-3]]
    assert float(rows[-1][0]) == round(hist.max_us / 1000, 3)
    assert (float(rows[-1][1]), int(rows[-1][2])) == (1.0, step.request_count)
    values = [float(r[0]) for r in rows]
    assert values == sorted(values)
    max_line, total = lines[-2].split(",")
    assert float(max_line.split("=")[1]) == round(hist.max_us / 1000, 3)
    assert int(total.split("=")[1].rstrip("]")) == step.request_count


def test_a_run_compared_with_itself_passes(runs: Runs, tmp_path: Path) -> None:
    junit = tmp_path / "self.xml"
    run = str(runs.identity)
    result = loadgen_here("compare", run, run, "--json", "--junit", str(junit), "--db", runs.db)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["verdict"] == "pass" and data["warnings"] == []
    assert [s["level"] for s in data["steps"]] == [1, 2]
    for step in data["steps"]:
        assert step["throughput"]["change_pct"] == 0.0
        assert all(p["change_pct"] == 0.0 for p in step["latency"].values())
    assert ET.parse(junit).getroot().attrib == {
        "name": "loadgen compare",
        "tests": "2",
        "failures": "0",
        "errors": "0",
    }


def test_different_models_need_force_and_then_regress(runs: Runs) -> None:
    base, new = str(runs.identity), str(runs.fixed_latency)
    refused = loadgen_here("compare", base, new, "--db", runs.db)
    assert refused.returncode == 2
    line = one_line_error(refused)
    assert "'identity'" in line and "'fixed_latency'" in line and "--force" in line

    forced = loadgen_here("compare", base, new, "--force", "--db", runs.db)
    assert forced.returncode == 1, forced.stderr
    assert "verdict: regression (2 of 2 matched step(s) regressed)" in forced.stdout
    assert "loadgen: warning: different models compared" in forced.stderr
