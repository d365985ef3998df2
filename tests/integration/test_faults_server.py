"""The server fails on purpose mid-sweep: killed and restarted, a model unloaded and reloaded mid-step,
every request failing. No finished step is lost, no cut or mixed step is stored as a good one."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadgen.errors import EXIT_ERRORS, EXIT_FAILED
from loadgen.results import RunStatus
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore
from tests.cli import loadgen_here, start_loadgen, wait_for_steps
from tests.integration.conftest import discard, start_server

pytestmark = pytest.mark.faults
QUICK = ["-p", "500", "--warmup", "200", "-r", "3", "--no-metrics", "-q"]


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A private server with one model (identity), in explicit model control: it starts in seconds,
    can be restarted, and lets a test unload and load its model."""
    server = start_server(
        tmp_path, "server", ("identity",), ("--model-control-mode=explicit", "--load-model=identity")
    )
    try:
        yield server
    finally:
        discard(server)


def _repository_call(server: EmbeddedServer, action: str) -> None:
    request = urllib.request.Request(
        f"{server.http_url}/v2/repository/models/identity/{action}", data=b"{}", method="POST"
    )
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=30) as answer:
        assert answer.status == 200


def test_a_server_killed_and_restarted_is_waited_for_and_the_sweep_goes_on(
    small_server: EmbeddedServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    proc = start_loadgen(
        "sweep", "-m", "identity", "-u", small_server.grpc_url, "--concurrency", "1,2,3",
        "--retry-unavailable", "90", *QUICK, "--db", db,
    )  # fmt: skip
    run_id = wait_for_steps(db, 1, proc)
    small_server.kill()  # during the second step
    time.sleep(1.0)
    small_server.start()
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "cut short" in stderr  # the user is told which step
    with RunStore(db) as store:
        run = store.get_run(run_id)
        steps = store.steps(run_id)
    assert run.status is RunStatus.COMPLETED
    assert [s.concurrency for s in steps] == [1, 2, 3]  # nothing lost, the sweep went on
    assert steps[0].interrupted is None and steps[2].interrupted is None
    assert steps[1].interrupted is not None and "Triton" in steps[1].interrupted  # marked, not good
    assert steps[2].throughput > 0 and steps[2].error_count == 0  # measured on the restarted server
    assert "cut short" in stdout  # the table's Interrupted column


def test_without_retry_a_killed_server_fails_the_run_with_the_cut_step_marked(
    small_server: EmbeddedServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    proc = start_loadgen(
        "sweep", "-m", "identity", "-u", small_server.grpc_url, "--concurrency", "1,2,3,4", *QUICK, "--db", db
    )
    run_id = wait_for_steps(db, 1, proc)
    small_server.kill()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_FAILED, stderr
    assert "Traceback" not in stderr and "was cut short" in stderr
    with RunStore(db) as store:
        run = store.get_run(run_id)
        steps = store.steps(run_id)
    assert run.status is RunStatus.FAILED and run.error is not None and "server lost" in run.error
    *finished, cut = steps
    assert finished and all(s.interrupted is None and s.throughput > 0 for s in finished)
    assert cut.interrupted is not None


def test_a_model_reloaded_mid_step_is_flagged_never_a_mixed_delta(
    small_server: EmbeddedServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    proc = start_loadgen(
        "sweep", "-m", "identity", "-u", small_server.grpc_url, "--concurrency", "2",
        "-p", "500", "--warmup", "200", "-r", "8", "-s", "0.001", "--no-metrics", "-q", "--db", db,
    )  # fmt: skip
    time.sleep(3.0)  # warm-up and a few windows in (the CLI starts in ~1.5 s)
    _repository_call(small_server, "unload")
    time.sleep(0.5)
    _repository_call(small_server, "load")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    with RunStore(db) as store:
        (run,) = store.list_runs()
        (step,) = store.steps(run.id)
    assert run.status is RunStatus.COMPLETED
    assert step.server_stats_reset  # flagged
    assert step.server_inference_count is None and step.server_queue_us is None  # no delta at all
    assert step.error_count > 0, step  # requests sent while it was gone failed, and were counted
    assert step.request_count > 0


def test_a_run_whose_every_request_failed_exits_4_and_says_so(triton: EmbeddedServer, tmp_path: Path) -> None:
    data = tmp_path / "raise.json"
    data.write_text(json.dumps({"data": [{"CODE": [-1]}]}))  # error_code raises on every request
    db = f"sqlite:///{tmp_path}/r.db"
    common = ["-m", "error_code", "-u", triton.grpc_url, "--input-data", str(data), *QUICK, "--db", db]
    result = loadgen_here("sweep", *common, "--concurrency", "1,2")
    assert result.returncode == EXIT_ERRORS, result.stderr
    assert "every request of its 2 step(s) failed" in result.stderr
    assert "every one of its" in result.stdout  # each step called out under the table
    with RunStore(db) as store:
        (run,) = store.list_runs()
        assert run.status is RunStatus.COMPLETED and run.step_count == 2  # stored all the same
    mixed = tmp_path / "half.json"
    mixed.write_text(json.dumps({"data": [{"CODE": [0]}, {"CODE": [1]}]}))  # half the requests fail
    common = ["-m", "error_code", "-u", triton.grpc_url, "--input-data", str(mixed), *QUICK, "--db", db]
    # by default a run with some successes exits 0 (test_error_accounting's sweeps fail 5 in 6)
    strict = loadgen_here("sweep", *common, "--max-error-rate", "10%")
    assert strict.returncode == EXIT_ERRORS, strict.stderr
    assert "1 step(s) above --max-error-rate 10%: concurrency 1: 50.0% failed" in strict.stderr
    assert loadgen_here("sweep", *common, "--max-error-rate", "60").returncode == 0
