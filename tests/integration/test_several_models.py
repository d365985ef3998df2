"""Several models loaded at the same time: one run per model, tied together by a group label."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from loadgen.results import RunStatus
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore
from tests.cli import loadgen_here, one_line_error

QUICK = ["-p", "700", "--warmup", "200", "-r", "3", "--no-metrics", "-q"]


def test_two_models_run_together_each_with_its_own_load(triton: EmbeddedServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    out = tmp_path / "out.csv"
    result = loadgen_here(
        "sweep",
        "-m",
        "identity",
        "-m",
        "fixed_latency:concurrency=2,batch-size=1",
        "-u",
        triton.grpc_url,
        "--concurrency",
        "1,4",
        *QUICK,
        "--db",
        db,
        "--csv",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    with RunStore(db) as store:
        runs = {run.model: run for run in store.list_runs()}
        assert set(runs) == {"identity", "fixed_latency"}
        assert all(run.status is RunStatus.COMPLETED for run in runs.values())
        group = runs["identity"].labels["group"]
        assert group and runs["fixed_latency"].labels["group"] == group
        assert runs["identity"].labels["models"] == "identity,fixed_latency"
        assert [s.concurrency for s in store.steps(runs["identity"].id)] == [1, 4]
        (fixed,) = store.steps(runs["fixed_latency"].id)
        assert fixed.concurrency == 2 and fixed.throughput > 60  # ~99/s even while identity is loaded
        # the two runs overlapped in time: the interference is what the user came to see. A step
        # ends no earlier than its start plus its measured windows, so these ends are lower bounds.
        identity_steps = store.steps(runs["identity"].id)
        identity_end = identity_steps[-1].started_at + timedelta(seconds=identity_steps[-1].duration_s)
        fixed_end = fixed.started_at + timedelta(seconds=fixed.duration_s)
        assert fixed.started_at < identity_end and identity_steps[0].started_at < fixed_end
    assert (tmp_path / "out.identity.csv").exists() and (tmp_path / "out.fixed_latency.csv").exists()


def test_several_models_usage_errors(triton: EmbeddedServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    bad = loadgen_here(
        "sweep", "-m", "identity", "-m", "fixed_latency:speed=9", "-u", triton.grpc_url, "--db", db
    )
    assert bad.returncode == 2 and "unknown option 'speed'" in one_line_error(bad)
    twice = loadgen_here("sweep", "-m", "identity", "-m", "identity", "-u", triton.grpc_url, "--db", db)
    assert twice.returncode == 2 and "a model is named twice" in one_line_error(twice)
    unknown = loadgen_here("sweep", "-m", "identity", "-m", "nope", "-u", triton.grpc_url, *QUICK, "--db", db)
    assert unknown.returncode == 2 and "'nope'" in one_line_error(unknown)
