"""The HTTP transport against the real server: same measurements, same error accounting."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from loadgen.config import MeasurementSettings, SweepSettings
from loadgen.errors import ServerUnavailable
from loadgen.results import RunStatus
from loadgen.runner import execute_sweep
from loadgen.scrape.server_api import ServerAPI
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore
from tests.repository import LISTED

FAST = MeasurementSettings(measurement_interval_ms=700, warmup_ms=200, max_windows=4)


def _settings(triton: EmbeddedServer, model: str, levels: tuple[int, ...], protocol: str) -> SweepSettings:
    url = triton.http_url if protocol == "http" else triton.grpc_url
    return SweepSettings(
        model=model,
        levels=levels,
        url=url,
        protocol=protocol,  # type: ignore[arg-type]
        metrics_url=triton.metrics_url,
        measurement=FAST,
    )


def test_http_sweep_stores_the_same_kind_of_steps(triton: EmbeddedServer, tmp_path: Path) -> None:
    with RunStore(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        outcome = asyncio.run(execute_sweep(_settings(triton, "identity", (1, 4), "http"), store))
        assert outcome.status is RunStatus.COMPLETED
        run = store.get_run(outcome.run_id)
        assert run.settings["protocol"] == "http"
        for step in store.steps(outcome.run_id):
            assert step.throughput > 0 and step.error_count == 0
            assert step.server_success_count == pytest.approx(step.request_count, rel=0.1, abs=20)
            assert sum(b.execution_count for b in store.batch_stats(step.id)) == step.server_execution_count


def test_http_and_grpc_agree_where_the_server_is_the_bottleneck(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    throughput = {}
    with RunStore(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        for protocol in ("http", "grpc"):
            outcome = asyncio.run(execute_sweep(_settings(triton, "fixed_latency", (4,), protocol), store))
            (step,) = store.steps(outcome.run_id)
            throughput[protocol] = step.throughput
            assert step.lat_avg_us is not None
            assert step.lat_avg_us / 1e3 == pytest.approx(40.4, rel=0.10)  # C x (S + slack)
    # the server sets the pace, so both protocols measure the same; 8% holds on a busy 2-core machine
    assert throughput["http"] == pytest.approx(throughput["grpc"], rel=0.08)


def test_http_control_plane_reports_unknown_models_and_unreachable_servers(triton: EmbeddedServer) -> None:
    async def probe() -> None:
        api = ServerAPI(triton.http_url, "http")
        try:
            assert "identity" in await api.model_names()
            assert (await api.model_config("identity"))["max_batch_size"] == 64
            with pytest.raises(
                LookupError,
                match=LISTED,
            ):
                await api.model_metadata("nope")
        finally:
            await api.close()
        dead = ServerAPI("127.0.0.1:9", "http")
        try:
            with pytest.raises(ServerUnavailable, match="cannot reach Triton"):
                await dead.check_ready()
        finally:
            await dead.close()

    asyncio.run(probe())


def test_headers_are_sent_but_never_stored(triton: EmbeddedServer, tmp_path: Path) -> None:
    from tests.cli import loadgen_here, one_line_error

    db_path = tmp_path / "r.db"
    db = f"sqlite:///{db_path}"
    for protocol, url in (("http", triton.http_url), ("grpc", triton.grpc_url)):
        result = loadgen_here(
            "sweep",
            "-m",
            "identity",
            "-i",
            protocol,
            "-u",
            url,
            "--no-metrics",
            "--concurrency",
            "2",
            "-p",
            "500",
            "--warmup",
            "100",
            "-r",
            "3",
            "-H",
            "Authorization: Bearer s3cret",
            "--db",
            db,
            "-q",
        )
        assert result.returncode == 0, result.stderr
    with RunStore(db) as store:
        runs = store.list_runs()
        assert [r.settings["header_names"] for r in runs] == [["Authorization"], ["Authorization"]]
        assert all(r.step_count == 1 for r in runs)
    for path in tmp_path.iterdir():  # the database and its WAL
        assert b"s3cret" not in path.read_bytes()
    bad = loadgen_here("sweep", "-m", "identity", "-u", triton.grpc_url, "-H", "no colon here", "--db", db)
    error = one_line_error(bad)  # not echoed: a header without its colon may be a whole token
    assert bad.returncode == 2 and "bad --header" in error and "no colon here" not in error
