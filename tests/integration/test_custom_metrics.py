"""A model's own Prometheus metrics (Python backend ``pb_utils.MetricFamily``) kept with each step
when ``--metrics-family`` names them, and plotted beside Triton's."""

from __future__ import annotations

from pathlib import Path

from analysis import load_run_data
from analysis.plots import server_metrics_figure
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore
from tests.cli import loadgen_here, one_line_error


def test_a_models_own_metrics_are_kept_and_plotted(triton: EmbeddedServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    result = loadgen_here(
        "sweep", "-m", "custom_metric", "-u", triton.grpc_url, "--metrics-url", triton.metrics_url,
        "--metrics-family", "custom_.*", "--metrics-interval", "100",
        "-p", "600", "--warmup", "200", "-r", "3", "-q", "--db", db,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with RunStore(db) as store:
        (run,) = store.list_runs()
        samples = store.metric_samples(run_id=run.id)
    assert run.settings["metrics_families"] == ["custom_.*"]
    names = {s.name for s in samples}
    assert {"custom_values_seen_total", "custom_last_mean"} <= names, names
    assert any(n.startswith("nv_") for n in names)  # Triton's are kept as before
    seen = [s.value for s in samples if s.name == "custom_values_seen_total"]
    assert all(s.labels == {"model": "custom_metric"} for s in samples if s.name.startswith("custom_"))
    assert seen == sorted(seen) and seen[-1] > seen[0]  # a counter that rose during the step
    figure = server_metrics_figure(load_run_data(db, run.id))
    titles = {a.text for a in figure.layout.annotations}
    assert {"custom_values_seen_total (per s)", "custom_last_mean"} <= titles, titles


def test_a_pattern_that_is_not_a_regular_expression_is_a_usage_error(tmp_path: Path) -> None:
    result = loadgen_here(
        "sweep", "-m", "custom_metric", "--metrics-family", "custom_(", "--db", f"sqlite:///{tmp_path}/r.db"
    )
    assert result.returncode == 2
    error = one_line_error(result)
    assert "--metrics-family 'custom_('" in error and "not a regular expression" in error, error
    assert not (tmp_path / "r.db").exists()  # refused before anything started
