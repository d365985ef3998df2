"""Failed requests against the real server: the same failure is counted and spelled the same on every
transport, a model's own UNAVAILABLE is an answer (not a lost server), and the user sees why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadgen.errors import EXIT_ERRORS
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore, StepRecord
from tests.cli import loadgen_here

QUICK = ["-p", "500", "--warmup", "200", "-r", "3", "--no-metrics", "-q"]
TRANSPORTS = {
    "grpc-h2": ["-i", "grpc", "--grpc-client", "h2"],
    "grpc-aio": ["-i", "grpc", "--grpc-client", "aio"],
    "http": ["-i", "http"],
}
# error_code's CODE -> the reason every transport must give (HTTP statuses read back as gRPC codes)
REASONS = {
    1: "INTERNAL: failed on request with INTERNAL",
    2: "NOT_FOUND: failed on request with NOT_FOUND",
    3: "INVALID_ARGUMENT: failed on request with INVALID_ARG",
    4: "UNAVAILABLE: failed on request with UNAVAILABLE",
    5: "UNIMPLEMENTED: failed on request with UNSUPPORTED",
}


def _codes(tmp: Path, *codes: int) -> Path:
    path = tmp / f"codes-{'-'.join(map(str, codes))}.json"
    path.write_text(json.dumps({"data": [{"CODE": [code]} for code in codes]}))
    return path


def _url(triton: EmbeddedServer, transport: str) -> str:
    return triton.http_url if transport == "http" else triton.grpc_url


def _sweep(triton: EmbeddedServer, model: str, transport: str, db: str, *extra: str, code: int = 0) -> str:
    """Failed requests are data, not a failed run: exit 0, or 4 when every request failed. (In
    this process: the CLI's own behaviour is the subject, not its start-up.)"""
    result = loadgen_here(
        "sweep",
        "-m",
        model,
        *TRANSPORTS[transport],
        "-u",
        _url(triton, transport),
        *QUICK,
        "--db",
        db,
        *extra,
    )
    assert result.returncode == code, result.stderr
    return result.stdout


def _last_step(db: str) -> StepRecord:
    with RunStore(db) as store:
        run = store.list_runs(limit=1)[0]
        (step,) = store.steps(run.id)
        return step


def test_the_same_failures_read_the_same_on_every_transport(triton: EmbeddedServer, tmp_path: Path) -> None:
    data = _codes(tmp_path, 0, 1, 2, 3, 4, 5)  # each request of the cycle fails its own way but one
    db = f"sqlite:///{tmp_path}/r.db"
    for transport in TRANSPORTS:
        stdout = _sweep(triton, "error_code", transport, db, "--input-data", str(data), "--concurrency", "2")
        step = _last_step(db)
        sent = step.request_count + step.error_count
        assert sent > 100, (transport, step)
        assert set(step.errors) == set(REASONS.values()), (transport, step.errors)
        for reason, count in step.errors.items():  # every code is 1/6 of the requests, on every transport
            assert count / sent == pytest.approx(1 / 6, abs=0.02), (transport, reason, count, sent)
        assert step.request_count / sent == pytest.approx(1 / 6, abs=0.02), transport
        # the user sees the reasons under the table, with their counts and shares
        top = min(step.errors, key=lambda reason: (-step.errors[reason], reason))
        assert "failed requests" in stdout and f"{step.errors[top]:,} ( 16." in stdout and top in stdout
        assert f"{step.error_count:,} of {sent:,} requests failed" in stdout, stdout


@pytest.mark.parametrize("client", ["h2", "aio"])
def test_a_models_own_unavailable_is_offered_again_at_once(
    triton: EmbeddedServer, tmp_path: Path, client: str
) -> None:
    """The closed loop once slept 10 ms after any UNAVAILABLE over gRPC (taking it for a lost server):
    482 such errors in 3 s against 14,653 INTERNAL ones. An answer is an answer, whatever its code."""
    db = f"sqlite:///{tmp_path}/r.db"
    rates = {}
    for code in (4, 1):  # UNAVAILABLE, then INTERNAL
        transport = "grpc-h2" if client == "h2" else "grpc-aio"
        args = ("--input-data", str(_codes(tmp_path, code)), "--concurrency", "4")
        _sweep(triton, "error_code", transport, db, *args, code=EXIT_ERRORS)
        step = _last_step(db)
        assert set(step.errors) == {REASONS[code]} and step.request_count == 0, step.errors
        rates[code] = step.error_count / step.duration_s
    # a 10 ms pause per slot caps UNAVAILABLE at 4 / 0.01 = 400/s; the server answers far faster
    assert rates[4] > 0.4 * rates[1], rates


def test_a_full_queue_is_rejected_with_one_reason_on_every_transport(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    rejected = {}
    for transport in TRANSPORTS:
        _sweep(triton, "queue_of_one", transport, db, "--concurrency", "6")
        step = _last_step(db)
        assert step.request_count > 0, (transport, step)  # the queue's one request is served
        assert set(step.errors) == {"UNAVAILABLE: Exceeds maximum queue size"}, (transport, step.errors)
        rejected[transport] = step.error_count / step.duration_s
    # offered as fast as each client sends (grpc.aio is the slowest), never throttled: a 10 ms pause
    # per slot after each UNAVAILABLE once left gRPC at 1/50 of HTTP's rate
    assert min(rejected.values()) > 0.08 * max(rejected.values()), rejected


def test_a_step_where_everything_failed_has_no_server_times(triton: EmbeddedServer, tmp_path: Path) -> None:
    """A request the model fails by raising is a failure to Triton: no queue or compute time at all."""
    db = f"sqlite:///{tmp_path}/r.db"
    _sweep(triton, "error_code", "grpc-h2", db, "--input-data", str(_codes(tmp_path, -1)), code=EXIT_ERRORS)
    step = _last_step(db)
    assert step.request_count == 0 and step.error_count > 0
    assert step.server_fail_count is not None and step.server_fail_count > 0  # the server counted them
    assert step.server_queue_us is None and step.server_compute_infer_us is None  # not 0: undefined
    with RunStore(db) as store:
        run_id = store.list_runs(limit=1)[0].id
    shown = loadgen_here("show", str(run_id), "--db", db)
    assert shown.returncode == 0, shown.stderr
    (row,) = [line for line in shown.stdout.splitlines() if line.startswith("│") and "NO" in line]
    queue, compute = [cell.strip() for cell in row.split("│")[7:9]]
    assert (queue, compute) == ("-", "-"), row
    assert "INTERNAL: Failed to process the request(s)" in shown.stdout  # show lists the reasons
    table = loadgen_here("table", str(run_id), "--db", db)
    assert table.returncode == 0, table.stderr
    assert "| Errors |" in table.stdout.splitlines()[0]  # the table marks the step that failed
    assert "had failed requests" in table.stderr and "INTERNAL: Failed to process" in table.stderr
