"""Sequence (stateful) models against the real server: ``accumulate`` keeps a running sum per
correlation id behind Triton's sequence batcher (oldest strategy, one instance)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

import pytest

from loadgen.config import MeasurementSettings, SweepSettings
from loadgen.results import RunStatus
from loadgen.runner import execute_sweep
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore, StepRecord
from tests.cli import loadgen_here, one_line_error, start_loadgen

MEASURE = MeasurementSettings(
    measurement_interval_ms=700, warmup_ms=150, max_windows=3, stability_percentage=50
)
QUICK = ["-p", "700", "--warmup", "150", "-r", "3", "--no-metrics", "-q"]
SEQUENCE_TROUBLE = ("sequence", "CORRID", "correlation")
"""What Triton's log says when sequences collide or are left open (none of it may appear)."""


def _log_from(triton: EmbeddedServer) -> int:
    assert triton.log_path is not None
    return triton.log_path.stat().st_size


def _new_trouble(triton: EmbeddedServer, offset: int) -> list[str]:
    assert triton.log_path is not None
    with triton.log_path.open(encoding="utf-8", errors="replace") as log:
        log.seek(offset)
        return [line for line in log if line[:1] in "EW" and any(word in line for word in SEQUENCE_TROUBLE)]


def _sweep(
    triton: EmbeddedServer, db: str, protocol: Literal["grpc", "http"], client: str
) -> list[StepRecord]:
    settings = SweepSettings(
        model="accumulate",
        levels=(1, 4, 16),
        protocol=protocol,
        url=triton.grpc_url if protocol == "grpc" else triton.http_url,
        grpc_client=client,
        metrics_url="",
        sequence_length=10,
        measurement=MEASURE,
    )
    with RunStore(db) as store:
        outcome = asyncio.run(execute_sweep(settings, store))
        assert outcome.status is RunStatus.COMPLETED, outcome.error
        return store.steps(outcome.run_id)


@pytest.mark.parametrize(("protocol", "client"), [("grpc", "h2"), ("http", "h2")], ids=["grpc", "http"])
def test_sequences_run_at_every_concurrency_without_a_single_error(
    triton: EmbeddedServer, tmp_path: Path, protocol: Literal["grpc", "http"], client: str
) -> None:
    offset = _log_from(triton)
    steps = _sweep(triton, f"sqlite:///{tmp_path}/runs.db", protocol, client)
    assert [s.concurrency for s in steps] == [1, 4, 16]
    for step in steps:
        assert step.error_count == 0 and step.request_count > 0, step.errors
    assert steps[-1].throughput > steps[0].throughput  # sequences batch together: more in flight, more done
    assert _new_trouble(triton, offset) == []


def _two_at_once(triton: EmbeddedServer, db: str, ranges: tuple[str, str]) -> list[StepRecord]:
    """Two loadgen processes on accumulate at concurrency 8 at the same time, each given a range."""
    args = ["sweep", "-m", "accumulate", "-u", triton.grpc_url, "--concurrency", "8", *QUICK, "--db", db]
    running = [start_loadgen(*args, "--sequence-id-range", ids) for ids in ranges]
    for proc in running:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with RunStore(db) as store:
        runs = store.list_runs()
        assert len(runs) == 2 and all(run.settings["sequence_id_range"] for run in runs)
        return [step for run in runs for step in store.steps(run.id)]


def test_two_loadgens_with_disjoint_id_ranges_share_a_server_without_a_sequence_error(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    offset = _log_from(triton)
    apart = _two_at_once(triton, f"sqlite:///{tmp_path}/apart.db", ("1000:1008", "2000:2008"))
    assert all(step.error_count == 0 and step.request_count > 0 for step in apart), [s.errors for s in apart]
    assert _new_trouble(triton, offset) == []
    # the same range twice: each takes over the other's sequences (server#3103)
    shared = _two_at_once(triton, f"sqlite:///{tmp_path}/shared.db", ("1:9", "1:9"))
    reasons = [reason for step in shared for reason in step.errors]
    assert all(step.error_count > 0 for step in shared)
    assert any("must specify the START flag on the first request" in r for r in reasons), reasons


def test_sequence_options_and_models_are_checked_in_one_line(triton: EmbeddedServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/runs.db"
    stateless = loadgen_here(
        "sweep", "-m", "identity", "--sequence-length", "5", "-u", triton.grpc_url, "--db", db
    )
    assert stateless.returncode == 2
    assert "model 'identity' has no sequence batching: --sequence-length applies" in one_line_error(stateless)
    zero = loadgen_here(
        "sweep", "-m", "accumulate", "--sequence-length", "0", "-u", triton.grpc_url, "--db", db
    )
    assert zero.returncode == 2 and "--sequence-length must be >= 1, got 0" in one_line_error(zero)
    narrow = loadgen_here(
        "sweep", "-m", "accumulate", "--concurrency", "1,8", "--sequence-id-range", "5:9",
        "-u", triton.grpc_url, "--db", db,
    )  # fmt: skip
    assert narrow.returncode == 2
    assert "--sequence-id-range holds 4 id(s), fewer than the highest concurrency, 8" in one_line_error(
        narrow
    )
