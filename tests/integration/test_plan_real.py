"""Plans and the scheduler against real embedded Triton servers, run as a user runs them."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from loadgen.config import MeasurementSettings, SweepSettings
from loadgen.errors import SchemaError
from loadgen.results import RunStatus
from loadgen.runner import execute_sweep
from loadgen.server import EmbeddedServer, ServerPorts, default_model_repository
from loadgen.storage import RunRecord, RunStore
from tests.cli import free_port, loadgen, loadgen_here, one_line_error, start_loadgen, stop_loadgen
from tests.integration.conftest import discard

REPO = Path(__file__).resolve().parents[2]
QUICK = (
    "measurement: {measurement_interval_ms: 300, warmup_ms: 100, stability_percentage: 50, "
    "max_trials: 3, metrics_interval_ms: 300}\n"
)


def _job(name: str, server: EmbeddedServer, model: str, extra: str = "") -> str:
    return (
        f"  {name}:\n    model: {model}\n    url: {server.grpc_url}\n"
        f"    metrics_url: {server.metrics_url}\n{extra}"
    )


def _plan(tmp: Path, text: str, name: str = "plan.yaml") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


@pytest.fixture
def slow_triton(tmp_path: Path, triton: EmbeddedServer) -> Iterator[EmbeddedServer]:
    """A server whose fixed_latency serves in 40 ms instead of 10: the same model, 4x slower."""
    repo = tmp_path / "slow_repository"
    shutil.copytree(default_model_repository() / "fixed_latency", repo / "fixed_latency")
    config = repo / "fixed_latency" / "config.pbtxt"
    config.write_text(config.read_text().replace('string_value: "10"', 'string_value: "40"'))
    server = EmbeddedServer(repo, ServerPorts.free(), log_file=tmp_path / "slow.log", startup_timeout_s=90)
    server.start()
    try:
        yield server
    finally:
        discard(server)


def _runs(db: str) -> list[RunRecord]:
    if not Path(db.removeprefix("sqlite:///")).exists():
        return []
    try:
        with RunStore(db, auto_upgrade=False) as store:  # a reader never migrates
            return store.list_runs()
    except SchemaError:  # the writer is still creating the schema
        return []


def test_a_regressed_job_makes_plan_run_exit_1_naming_it(
    triton: EmbeddedServer, slow_triton: EmbeddedServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    identity = _job(
        "identity-c2",
        triton,
        "identity",
        "    concurrency: 2\n"
        "    thresholds: {max_throughput_drop: 80%, max_latency_rise: 400%, percentile: 50}\n",
    )

    def plan(latency_server: EmbeddedServer) -> Path:
        latency = _job("latency-c4", latency_server, "fixed_latency", "    concurrency: 4\n")
        return _plan(tmp_path, f"name: gate\n{QUICK}jobs:\n{identity}{latency}")

    first = loadgen("plan", "run", str(plan(triton)), "--db", db, "-q")
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("no baseline yet (first run)") == 2, first.stdout

    # the same plan, but fixed_latency now answers from a server where it is 4x slower
    json_path = tmp_path / "verdicts.json"
    second = loadgen("plan", "run", str(plan(slow_triton)), "--db", db, "-q", "--json", str(json_path))
    assert second.returncode == 1, second.stdout + second.stderr
    assert "Traceback" not in second.stderr
    assert "loadgen: regression in job(s) latency-c4 (fixed_latency)\n" in second.stderr, second.stderr
    assert "regression" in second.stdout and "pass" in second.stdout

    runs = {(r.labels["job"], r.id): r for r in _runs(db)}
    assert all(r.labels["plan"] == "gate" and r.status is RunStatus.COMPLETED for r in runs.values())
    first_ids = {job: min(i for j, i in runs if j == job) for job in ("identity-c2", "latency-c4")}
    verdicts = {v["job"]: v for v in json.loads(json_path.read_text())}
    assert verdicts["identity-c2"]["verdict"] in ("pass", "improvement")
    assert verdicts["identity-c2"]["baseline_run_id"] == first_ids["identity-c2"]
    latency = verdicts["latency-c4"]
    assert latency["verdict"] == "regression" and latency["baseline_run_id"] == first_ids["latency-c4"]
    (step,) = latency["comparison"]["steps"]
    assert step["throughput"]["change_pct"] < -50  # 100/s -> 25/s


def test_a_job_with_wrong_answers_fails_whatever_its_speed(triton: EmbeddedServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    jobs = _job("drift", triton, "drifting", "    concurrency: 8\n    validate: true\n    workers: 2\n")
    result = loadgen(
        "plan", "run", str(_plan(tmp_path, f"name: answers\n{QUICK}jobs:\n{jobs}")), "--db", db, "-q"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "loadgen: run failed in job(s) drift" in result.stderr
    assert "answers differ from the reference" in result.stdout
    (run,) = _runs(db)
    assert run.settings["validate"] is True and run.settings["workers"] == 2


def test_a_job_runs_its_models_together_with_options_only_flags_had(
    triton: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOADGEN_TEST_TOKEN", "s3cret")  # the plan reads header values from here
    db = tmp_path / "runs.db"
    text = (
        f"name: together\n{QUICK}url: {triton.grpc_url}\nmetrics_url: off\nrequest_timeout: 5\n"
        "headers: {X-Token: '${LOADGEN_TEST_TOKEN}'}\n"
        "jobs:\n  both:\n    models: [identity, {model: fixed_latency, concurrency: 2}]\n"
        "    concurrency: 1,4\n    latency_limit: p99=2s\n"
    )
    result = loadgen("plan", "run", str(_plan(tmp_path, text)), "--db", f"sqlite:///{db}", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    runs = {run.model: run for run in _runs(f"sqlite:///{db}")}
    assert set(runs) == {"identity", "fixed_latency"}
    identity, fixed = runs["identity"], runs["fixed_latency"]
    assert identity.labels["group"] == fixed.labels["group"] and identity.labels["job"] == "both"
    assert identity.settings["request_timeout_s"] == 5.0 and identity.settings["header_names"] == ["X-Token"]
    assert identity.settings["latency_limit"] == {"percentile": 99.0, "limit_us": 2_000_000.0}
    assert b"s3cret" not in db.read_bytes()
    with RunStore(f"sqlite:///{db}") as store:
        identity_steps, (fixed_step,) = store.steps(identity.id), store.steps(fixed.id)
    assert [s.concurrency for s in identity_steps] == [1, 4] and fixed_step.concurrency == 2
    # measured at the same time, as `sweep -m identity -m fixed_latency` does (ends are lower bounds)
    identity_end = identity_steps[-1].started_at + timedelta(seconds=identity_steps[-1].duration_s)
    fixed_end = fixed_step.started_at + timedelta(seconds=fixed_step.duration_s)
    assert fixed_step.started_at < identity_end and identity_steps[0].started_at < fixed_end


def test_an_unreachable_server_is_exit_2_after_the_other_jobs(tmp_path: Path) -> None:
    path = _plan(tmp_path, "jobs:\n  down: {model: identity, url: '127.0.0.1:1', metrics_url: off}\n")
    result = loadgen_here("plan", "run", str(path), "--db", f"sqlite:///{tmp_path / 'runs.db'}", "-q")
    assert result.returncode == 2
    error = one_line_error(result)
    assert "job down (identity): cannot reach Triton at 127.0.0.1:1" in error
    assert "error" in result.stdout  # the verdict table is still printed


def test_plan_check_accepts_the_example_and_lists_every_problem(tmp_path: Path) -> None:
    good = loadgen_here("plan", "check", str(REPO / "plans" / "nightly.yaml"))
    assert good.returncode == 0, good.stderr
    assert "plan 'nightly' is valid, 5 job(s)" in good.stdout
    bad = _plan(tmp_path, "jobs:\n  a:\n    model: identity\n    concurency: 4\n    schedule: '99 * * * *'\n")
    result = loadgen_here("plan", "check", str(bad))
    assert result.returncode == 2
    assert f"{bad}:4: unknown key 'concurency' in job 'a' (did you mean 'concurrency'?)" in result.stderr
    assert f"{bad}:5: job 'a': bad schedule '99 * * * *'" in result.stderr
    assert one_line_error(result) == f"loadgen: error: {bad}: 2 problem(s) in the plan; nothing was run"
    # plan run refuses the same plan before anything runs
    run = loadgen_here("plan", "run", str(bad), "--db", f"sqlite:///{tmp_path / 'runs.db'}")
    assert run.returncode == 2 and not (tmp_path / "runs.db").exists()


def test_schedule_runs_a_job_twice_survives_a_failing_one_and_stops_on_sigterm(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    good = _job("every-second", triton, "identity", "    concurrency: 1\n")
    path = _plan(
        tmp_path,
        f"name: ticks\nschedule: '* * * * * *'\n{QUICK}jobs:\n{good}"
        "  down: {model: identity, url: '127.0.0.1:1', metrics_url: off}\n",
    )
    port = free_port()
    proc = start_loadgen("schedule", str(path), "--db", db, "--exporter-port", str(port))
    try:
        deadline = time.monotonic() + 45
        while len([r for r in _runs(db) if r.status is RunStatus.COMPLETED]) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the scheduler stored no two runs in time"
            time.sleep(0.2)
        # the scheduler serves its jobs' metrics, counters continuing from run to run
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
    finally:
        out, err = stop_loadgen(proc)
    served = [line for line in metrics.splitlines() if line.startswith("loadgen_requests_total{")]
    assert served and 'model="identity"' in served[0] and float(served[0].split()[-1]) > 0, metrics
    assert "loadgen_run_info{" in metrics
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    runs = _runs(db)
    assert {r.labels["job"] for r in runs} == {"every-second"}
    assert all(r.labels["plan"] == "ticks" for r in runs)
    assert RunStatus.RUNNING not in {r.status for r in runs}  # a run cut by SIGTERM is marked interrupted
    done = [line for line in err.splitlines() if "job every-second model identity run " in line]
    assert len(done) >= 2, err
    assert "no baseline yet (first run)" in done[0] and " vs run " in done[1], err
    assert "job down model identity no run: error (cannot reach Triton at 127.0.0.1:1" in err
    assert err.rstrip().endswith("loadgen: stopped"), err


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append({"content_type": self.headers["Content-Type"], **json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test server
        return None


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Handler", (_Webhook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/verdicts", received
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_and_hook_get_the_verdict_json_on_regression(
    triton: EmbeddedServer, tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    # the golden run sent batches of 16: 16x the inferences/s of the scheduled batch-1 job
    golden = SweepSettings(
        model="identity",
        levels=(1,),
        url=triton.grpc_url,
        metrics_url="",
        batch_size=16,
        measurement=MeasurementSettings(measurement_interval_ms=300, warmup_ms=100, stability_percentage=50),
        labels={"golden": "1"},
    )
    with RunStore(db) as store:
        golden_id = asyncio.run(execute_sweep(golden, store)).run_id
    job = _job("batch-1", triton, "identity", "    concurrency: 1\n    baseline: {label: golden=1}\n")
    path = _plan(tmp_path, f"name: hooks\nschedule: '*/2 * * * * *'\n{QUICK}jobs:\n{job}")
    hook_file = tmp_path / "hook.json"
    proc = start_loadgen("schedule", str(path), "--db", db, "--webhook", url, "--hook", f"cat > {hook_file}")
    try:
        deadline = time.monotonic() + 45
        # both: the hook runs beside the webhook call and may finish writing after it arrived
        while not received or not (hook_file.exists() and hook_file.read_text().strip()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no webhook call or hook output in time"
            time.sleep(0.2)
    finally:
        _, err = stop_loadgen(proc)
    assert proc.returncode == 0, err
    verdict = received[0]
    assert verdict["content_type"] == "application/json"
    assert (verdict["plan"], verdict["job"], verdict["model"]) == ("hooks", "batch-1", "identity")
    assert verdict["verdict"] == "regression" and verdict["baseline_run_id"] == golden_id
    assert verdict["comparison"]["verdict"] == "regression"
    hooked = json.loads(hook_file.read_text())
    assert hooked["verdict"] == "regression" and hooked["job"] == "batch-1"


def test_stopping_the_scheduler_mid_run_marks_that_run_interrupted(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    from loadgen.cron import run_cron_jobs
    from loadgen.plans import parse_plan

    # windows that never agree within 0.001%: the run would take 10 windows of 1 s
    endless = (
        "    measurement: {measurement_interval_ms: 1000, stability_percentage: 0.001, max_trials: 10}\n"
    )
    plan = parse_plan(f"schedule: '* * * * * *'\njobs:\n{_job('long', triton, 'identity', endless)}")

    async def scenario(store: RunStore) -> None:
        stop = asyncio.Event()
        scheduler = asyncio.create_task(run_cron_jobs(plan, plan.jobs, store, stop))
        deadline = time.monotonic() + 20
        while not any(r.status is RunStatus.RUNNING for r in store.list_runs()):
            assert not scheduler.done() and time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # into the warm-up or the first window
        stop.set()
        await asyncio.wait_for(scheduler, 10)

    with RunStore(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        asyncio.run(scenario(store))
        (run,) = store.list_runs()
    assert run.status is RunStatus.INTERRUPTED and run.labels["job"] == "long"


def test_a_matrix_expands_into_jobs_whose_runs_read_side_by_side(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    text = (
        f"name: grid\n{QUICK}url: {triton.grpc_url}\nmetrics_url: off\nconcurrency: 2\njobs:\n"
        "  sizes:\n    matrix: {model: [identity], batch_size: [1, 4]}\n"
        "  other: {model: identity}\n"
    )
    result = loadgen("plan", "run", str(_plan(tmp_path, text)), "--job", "sizes", "--db", db, "-q")
    assert result.returncode == 0, result.stderr
    runs = sorted(_runs(db), key=lambda r: r.id)
    assert [(r.labels["job"], r.labels["matrix"], r.settings["batch_size"]) for r in runs] == [
        ("sizes[model=identity,batch_size=1]", "sizes", 1),
        ("sizes[model=identity,batch_size=4]", "sizes", 4),
    ]
    assert "matrix sizes: its runs side by side, ratios to the first" in result.stdout
    header = next(line for line in result.stdout.splitlines() if line.startswith("| Concurrent requests"))
    assert "| model=identity batch_size=4: Throughput (infer/s) |" in header
    assert header.endswith(
        "| Throughput model=identity batch_size=4 / model=identity batch_size=1 (x) |"
        " p99 latency model=identity batch_size=4 / model=identity batch_size=1 (x) |"
    )
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("| 2 |")]
    assert float(row.split("|")[-3]) > 0  # the throughput ratio
    side = loadgen_here("table", str(runs[0].id), str(runs[1].id), "--format", "csv", "--db", db)
    assert side.returncode == 0, side.stderr
    assert side.stdout.startswith("Concurrent requests,model=identity batch_size=1: Throughput (infer/s),")
