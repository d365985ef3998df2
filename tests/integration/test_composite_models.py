"""Composite models against the embedded server: an ensemble's composing models read from its
config, a BLS model's named, each one's /stats kept per step, in tables, CSV, findings and report."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from analysis.frames import load_run_data
from analysis.report import build_report, write_report
from loadgen.config import MeasurementSettings, SweepSettings
from loadgen.results import RunStatus
from loadgen.runner import execute_sweep
from loadgen.server.embedded import EmbeddedServer
from loadgen.storage import RunStore
from tests.cli import loadgen_here
from tests.integration.test_report_real import _parse, _render_offline

FAST = MeasurementSettings(measurement_interval_ms=600, warmup_ms=200, max_windows=3)


@dataclass(frozen=True)
class Runs:
    db: str
    ensemble: int
    bls: int


def _settings(
    triton: EmbeddedServer,
    model: str,
    levels: tuple[int, ...],
    composing: tuple[str, ...] = (),
    trace_rate: int = 0,
) -> SweepSettings:
    return SweepSettings(
        model=model,
        levels=levels,
        url=triton.grpc_url,
        metrics_url=triton.metrics_url,
        measurement=FAST,
        composing_models=composing,
    )


@pytest.fixture(scope="module")
def runs(triton: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    db = f"sqlite:///{tmp_path_factory.mktemp('composite') / 'runs.db'}"
    with RunStore(db) as store:
        ensemble = asyncio.run(
            execute_sweep(_settings(triton, "classify_pipeline", (1, 4), trace_rate=2), store)
        )
        bls = asyncio.run(
            execute_sweep(_settings(triton, "bls_pipeline", (2,), ("preprocess", "resnet")), store)
        )
    assert ensemble.status is bls.status is RunStatus.COMPLETED, (ensemble.error, bls.error)
    return Runs(db, ensemble.run_id, bls.run_id)


def test_an_ensembles_composing_models_count_what_its_config_implies(runs: Runs) -> None:
    """Each ensemble request runs each step once: every composing model served as many inferences as
    the ensemble, give or take the requests in flight at the window boundaries."""
    with RunStore(runs.db) as store:
        steps = store.steps(runs.ensemble)
        composing = store.composing_stats(runs.ensemble)
    assert [s.concurrency for s in steps] == [1, 4]
    for step in steps:
        models = composing[step.id]
        assert list(models) == ["preprocess", "resnet"]  # the ensemble's step order
        assert step.server_inference_count is not None and step.server_inference_count > 50
        for name, stats in models.items():
            assert abs(stats.inference_count - step.server_inference_count) <= step.concurrency, name
            assert stats.success.count == stats.inference_count  # batch size 1: a request each
            assert 0 < stats.execution_count <= stats.inference_count
            assert stats.compute_infer.ns > 0 and stats.queue.count == stats.inference_count
    samples = load_run_data(runs.db, runs.ensemble).metrics
    assert {"preprocess", "resnet", "classify_pipeline"} <= set(samples["label_model"].dropna())


def test_a_bls_breakdown_names_both_children(runs: Runs, tmp_path: Path) -> None:
    data = load_run_data(runs.db, runs.bls)
    assert set(data.composing["model"]) == {"preprocess", "resnet"}
    assert data.composing["share"].sum() == pytest.approx(1.0)
    table = loadgen_here("table", str(runs.bls), "--models", "--format", "csv", "--db", runs.db)
    assert table.returncode == 0, table.stderr
    assert "preprocess" in table.stdout and "resnet" in table.stdout
    csv = tmp_path / "bls.csv"
    shown = loadgen_here("show", str(runs.bls), "--csv", str(csv), "--db", runs.db)
    assert shown.returncode == 0, shown.stderr
    assert "of the composing models' server time" in shown.stdout
    for model in ("preprocess", "resnet"):  # perf_analyzer's names: no version given on the command line
        lines = (tmp_path / f"{model}_v.bls.csv").read_text().splitlines()
        assert lines[0].startswith(
            "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue"
        )
        assert len(lines) == 2 and lines[1].startswith("2,")


def test_the_report_shows_the_per_model_breakdown_and_the_tail_in_chromium(
    runs: Runs, tmp_path: Path
) -> None:
    report = build_report([load_run_data(runs.db, runs.ensemble)])
    assert any("of the composing models' server time" in f.text for f in report.findings[runs.ensemble])
    out = write_report(report, tmp_path / "report.html")
    html = out.read_text(encoding="utf-8")
    assert "Composing models" in html and "Time per composing model" in html
    rendered = _parse(_render_offline(out, tmp_path).dom)
    assert set(rendered.figures) == rendered.rendered and len(rendered.figures) >= 3


def test_composing_models_refused_in_one_line(triton: EmbeddedServer, tmp_path: Path) -> None:
    db = str(tmp_path / "runs.db")
    base = ("sweep", "-u", triton.grpc_url, "--concurrency", "1", "--db", db)
    unknown = loadgen_here(*base, "-m", "bls_pipeline", "--composing-models", "preprocess,resnett")
    assert (
        unknown.returncode == 2
        and "'resnett'" in unknown.stderr
        and "did you mean 'resnet'" in unknown.stderr
    )
    assert len(unknown.stderr.strip().splitlines()) == 1
    itself = loadgen_here(*base, "-m", "bls_pipeline", "--composing-models", "bls_pipeline")
    assert itself.returncode == 2 and "the model being measured" in itself.stderr
