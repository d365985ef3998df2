"""``--trace-rate`` against the embedded server: Triton's traces of sampled requests joined to the
client's timings, the tail explained on models whose slow requests are slow for a known reason,
an ensemble's steps traced under their request, and the trace settings put back however the sweep
ends."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analysis.finding_kinds import Kind
from analysis.frames import load_run_data
from analysis.report import build_report, write_report
from analysis.tail import tail_frame
from loadgen.config import MeasurementSettings, SweepSettings
from loadgen.errors import StorageError
from loadgen.results import RunInfo, RunStatus
from loadgen.runner import execute_sweep
from loadgen.server.embedded import EmbeddedServer
from loadgen.storage import RunStore
from tests.cli import loadgen_here, start_loadgen, stop_loadgen
from tests.integration.conftest import discard, start_server
from tests.integration.test_report_real import _parse, _render_offline

FAST = MeasurementSettings(measurement_interval_ms=800, warmup_ms=300, max_windows=3)
TRACED_MODELS = ("slow_sometimes", "fixed_latency", "identity", "preprocess", "resnet", "classify_pipeline")


@pytest.fixture(scope="module")
def traced_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A server of its own: Triton 2.51 can crash under heavy tracing (README), and a crash must not
    take the session's server, and every test after it, down."""
    server = start_server(tmp_path_factory.mktemp("traced"), "traced", TRACED_MODELS)
    try:
        yield server
    finally:
        discard(server)


def _trace_settings(server: EmbeddedServer, model: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.http_url}/v2/models/{model}/trace/setting", timeout=10) as answer:
        settings: dict[str, Any] = json.load(answer)
    return settings


def _traced(server: EmbeddedServer, model: str, level: int, rate: int, **changes: Any) -> SweepSettings:
    settings = SweepSettings(
        model=model,
        levels=(level,),
        url=server.grpc_url,
        metrics_url="",
        measurement=FAST,
        trace_rate=rate,
        grpc_client="aio",
    )
    return replace(settings, **changes)


def _groups(traces: pd.DataFrame, steps: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The one step's tail groups by name (median, slowest 1%), each its mean latency and parts."""
    rows = tail_frame(traces, steps).to_dict("records")
    return {str(r["group"]): {str(k): float(v) for k, v in r.items() if str(k).endswith("_us")} for r in rows}


def _sweep(settings: SweepSettings, db: str) -> int:
    with RunStore(db) as store:
        outcome = asyncio.run(execute_sweep(settings, store))
    assert outcome.status is RunStatus.COMPLETED, outcome.error
    return outcome.run_id


def test_a_compute_tail_is_found_in_compute_and_the_settings_come_back(
    traced_triton: EmbeddedServer, tmp_path: Path
) -> None:
    """slow_sometimes at concurrency 1: one execution in 50 takes 20x longer and nothing queues."""
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    before = _trace_settings(traced_triton, "slow_sometimes")
    run_id = _sweep(_traced(traced_triton, "slow_sometimes", 1, 1), db)
    assert _trace_settings(traced_triton, "slow_sometimes") == before
    data = load_run_data(db, run_id)
    (step,) = data.steps.to_dict("records")
    top = data.traces[data.traces["parent_id"].isna()]
    assert len(top) >= 0.95 * step["request_count"]  # Triton traced every request: nearly all joined
    assert (top["server_us"] <= top["client_us"]).all()
    assert top["request_id"].is_unique and (top["model"] == "slow_sometimes").all()
    groups = _groups(data.traces, data.steps)
    slow = groups["slowest 1%"]
    assert (
        slow["compute_us"] > 0.8 * slow["client_us"] and slow["client_us"] > 5 * groups["median"]["client_us"]
    )
    report = build_report([data])
    found = [f.text for f in report.findings[run_id] if f.kind is Kind.TAIL]
    assert any(text.startswith("the p99 is compute") for text in found), found
    assert step["untraced_throughput"] > 0
    out = write_report(report, tmp_path / "report.html")
    html = out.read_text(encoding="utf-8")
    assert "What the slowest requests waited for" in html and "Tracing overhead" in html
    rendered = _parse(_render_offline(out, tmp_path).dom)
    assert set(rendered.figures) == rendered.rendered and len(rendered.figures) >= 4
    shown = loadgen_here("table", str(run_id), "--tail", "--db", db)
    assert shown.returncode == 0 and "slowest 1%" in shown.stdout, shown.stderr


def test_a_queueing_tail_over_http_is_found_in_the_queue(
    traced_triton: EmbeddedServer, tmp_path: Path
) -> None:
    """fixed_latency at concurrency 8: one 10 ms instance, so each request waits for the 7 ahead."""
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    settings = _traced(traced_triton, "fixed_latency", 8, 1, protocol="http", url=traced_triton.http_url)
    data = load_run_data(db, _sweep(settings, db))
    slow = _groups(data.traces, data.steps)["slowest 1%"]
    assert slow["queue_us"] > 0.7 * slow["client_us"]
    text = [f.text for f in build_report([data]).findings[data.run.id] if f.kind is Kind.TAIL]
    assert any(t.startswith("the p99 is queueing") and "add an instance" in t for t in text), text


def test_an_ensembles_steps_are_traced_under_their_request(
    traced_triton: EmbeddedServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    # at most 40 traces a step, the warm-up's included: without a warm-up they fall in the windows
    # (with one, a fast machine can spend them all before the first window)
    settings = _traced(
        traced_triton, "classify_pipeline", 2, 2, trace_count=40, measurement=replace(FAST, warmup_ms=0)
    )
    traces = load_run_data(db, _sweep(settings, db)).traces
    top = traces[traces["parent_id"].isna()]
    children = traces[traces["parent_id"].notna()]
    assert 5 < len(top) <= 40 and set(children["model"]) == {"preprocess", "resnet"}
    assert set(children["parent_id"].astype(int)) == set(top["trace_id"])  # each child under its request
    assert (children.groupby("parent_id").size() == 2).all()
    assert (top["compute_us"] > 0).all()  # the ensemble's own time: its steps' sums


class _FailingStore(RunStore):
    def create_run(self, info: RunInfo) -> int:
        raise StorageError("the database is full")


def test_the_settings_come_back_after_an_error_and_after_sigint(
    traced_triton: EmbeddedServer, tmp_path: Path
) -> None:
    before = _trace_settings(traced_triton, "identity")
    with _FailingStore(f"sqlite:///{tmp_path / 'failing.db'}") as store, pytest.raises(StorageError):
        asyncio.run(execute_sweep(_traced(traced_triton, "identity", 1, 10), store))
    assert _trace_settings(traced_triton, "identity") == before

    db = f"sqlite:///{tmp_path / 'runs.db'}"
    argv = ["-m", "identity", "-u", traced_triton.grpc_url, "--trace-rate", "5", "-p", "20s", "--no-metrics"]
    proc = start_loadgen("sweep", *argv, "--db", db)
    deadline = time.monotonic() + 60
    while _trace_settings(traced_triton, "identity")["trace_level"] != ["TIMESTAMPS"]:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    time.sleep(0.5)
    _, err = stop_loadgen(proc, signal.SIGINT)
    assert proc.returncode == 130, err
    assert _trace_settings(traced_triton, "identity") == before


def test_tracing_refused_in_one_line(tmp_path: Path) -> None:
    """A server started without a trace file: Triton cannot be given one over the network."""
    server = start_server(tmp_path, "untraced", ("identity",), ("--trace-config=level=OFF",))
    try:
        db = str(tmp_path / "runs.db")
        result = loadgen_here(
            "sweep", "-m", "identity", "-u", server.grpc_url, "--trace-rate", "5", "--db", db
        )
        assert result.returncode == 2 and "writes no trace file" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert not Path(db).exists() or RunStore(f"sqlite:///{db}").list_runs() == []
    finally:
        discard(server)
    for argv, said in (
        (["--trace-rate", "5", "--request-rate", "10"], "not an open loop"),
        (["--trace-rate", "5", "--grpc-client", "h2"], "crashes tracing"),
        (["--trace-rate", "5", "--workers", "2"], "drop --workers"),
        (["--trace-file", "/x"], "--trace-file goes with --trace-rate"),
    ):
        result = loadgen_here("sweep", "-m", "identity", *argv, "--db", str(tmp_path / "x.db"))
        assert result.returncode == 2 and said in result.stderr, (argv, result.stderr)
