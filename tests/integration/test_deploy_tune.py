"""Deploy and tune on the real embedded server (issue 21): ``model add`` of the demo ResNet's ONNX
file answers like onnxruntime locally; a live tune of ``fixed_latency`` over instance counts finds
throughput k/S, puts the config back after Ctrl-C, success and failure, and resumes without redoing
what it finished; a config Triton refuses leaves the model serving; an instance-only change fails
no request. The server is ``loadgen serve --model-control explicit``: what a user tunes live."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from loadgen.deploy.onnx_signature import read_signature
from loadgen.deploy.served_check import check_served
from loadgen.errors import SchemaError
from loadgen.scrape.server_api import ServerAPI
from loadgen.server.install import default_model_repository
from loadgen.storage import RunStore
from loadgen.tune.live_config import CandidateRefused, LiveConfig
from loadgen.tune.space import Candidate
from tests.cli import free_port, loadgen, loadgen_here, start_loadgen, stop_loadgen
from tests.integration.conftest import require_server

T = TypeVar("T")
pytestmark = pytest.mark.server  # its server is a `loadgen serve` process, not a fixture of conftest
MODEL = "fixed_latency"
SERVICE_S = 0.0101  # SERVICE_TIME_MS 10 + PACING_SLACK_US 100
QUICK = ["-p", "300", "--warmup", "100", "-r", "4", "--no-metrics"]


@dataclass(frozen=True)
class Served:
    grpc_url: str
    model_repository: Path


def _ready(url: str) -> bool:
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=2) as answer:
            return int(answer.status) == 200
    except urllib.error.HTTPError as exc:
        exc.close()
        return False
    except OSError:
        return False


@pytest.fixture(scope="module")
def explicit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``loadgen serve --model-control explicit``: every model of its repository loaded at the start,
    loads and config overrides taken after; tests add models to its repository."""
    require_server()
    tmp = tmp_path_factory.mktemp("deploy")
    (tmp / "repo").mkdir()
    (tmp / "repo" / MODEL).symlink_to(default_model_repository() / MODEL)
    http, grpc = free_port(), free_port()
    serve = start_loadgen(
        "serve", "--model-control", "explicit", "--model-repository", str(tmp / "repo"),
        "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(free_port()),
        "--log-file", str(tmp / "serve.log"),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not _ready(f"http://127.0.0.1:{http}/v2/models/{MODEL}/ready"):
            assert serve.poll() is None and time.monotonic() < deadline, serve.communicate()
            time.sleep(0.2)
        yield Served(f"127.0.0.1:{grpc}", tmp / "repo")
    finally:
        stop_loadgen(serve)
    assert serve.returncode == 0


@pytest.fixture(scope="module")
def resnet_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo CNN's ONNX file, as model_repository/resnet/build_onnx.py builds it."""
    script = default_model_repository() / "resnet" / "build_onnx.py"
    spec = importlib.util.spec_from_file_location("build_onnx", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path: Path = module.build(tmp_path_factory.mktemp("onnx") / "resnet.onnx")
    return path


def _on(server: Served, call: Callable[[ServerAPI], Awaitable[T]]) -> T:
    """One control-plane call (its gRPC client needs a running loop)."""

    async def go() -> T:
        return await call(ServerAPI(server.grpc_url))

    return asyncio.run(go())


def _served(server: Served) -> dict[str, Any]:
    return _on(server, lambda api: api.model_config(MODEL))


def test_model_add_serves_the_onnx_file_as_onnxruntime_answers_it(
    explicit: Served, resnet_onnx: Path
) -> None:
    repo = explicit.model_repository
    common = ["--model-repository", str(repo), "--max-batch-size", "8", "--validate", "-u", explicit.grpc_url]
    fp32 = loadgen_here(
        "model", "add", str(resnet_onnx), "--name", "rnxt", "--dynamic-batching-delay", "100us", *common
    )
    assert fp32.returncode == 0, fp32.stderr
    assert "rnxt: OUTPUT__0: agrees bit for bit (largest difference 0)" in fp32.stdout
    assert "max_queue_delay_microseconds: 100" in (repo / "rnxt" / "config.pbtxt").read_text()
    fp16 = loadgen_here("model", "add", str(resnet_onnx), "--name", "rnxt16", "--fp16", *common)
    assert fp16.returncode == 0, fp16.stderr
    assert "rnxt16: OUTPUT__0: agrees within rtol=0.01, atol=0.001" in fp16.stdout
    assert (repo / "rnxt16" / "1" / "model.onnx").stat().st_size < 0.6 * resnet_onnx.stat().st_size
    # the check can fail: the FP16 model is not the FP32 file bit for bit
    signature = read_signature(resnet_onnx)
    (strict,) = _on(
        explicit, lambda api: check_served(api, "rnxt16", resnet_onnx, signature, max_batch_size=8, bar=None)
    )
    assert not strict.ok and 0 < strict.max_abs_diff < 1e-2, strict
    for name in ("rnxt", "rnxt16"):
        _on(explicit, lambda api, name=name: api.unload_model(name))  # type: ignore[misc]


def test_a_refused_config_keeps_the_model_serving_and_a_failure_puts_the_original_back(
    explicit: Served,
) -> None:
    original = _served(explicit)
    client = grpcclient.InferenceServerClient(explicit.grpc_url)
    tensor = grpcclient.InferInput("INPUT0", [1, 16], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 16), np.float32))

    async def refused_then_failed() -> None:
        async with LiveConfig(ServerAPI(explicit.grpc_url), MODEL) as live:
            with pytest.raises(CandidateRefused, match="did not load 'fixed_latency'"):
                await live.apply(Candidate(1, -1, None))  # max_batch_size must be >= 0
            assert client.infer(MODEL, [tensor]).as_numpy("OUTPUT0") is not None  # still serving
            assert await live.api.model_config(MODEL) == original
            await live.apply(Candidate(2, 4, 500))
            assert await live.api.model_config(MODEL) != original
            raise RuntimeError("the tune failed")

    with pytest.raises(RuntimeError, match="the tune failed"):
        asyncio.run(refused_then_failed())
    assert _served(explicit) == original


def test_an_instance_count_change_fails_no_request(explicit: Served) -> None:
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def send() -> None:
        client = grpcclient.InferenceServerClient(explicit.grpc_url)
        tensor = grpcclient.InferInput("INPUT0", [1, 16], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 16), np.float32))
        while not stop.is_set():
            try:
                client.infer(MODEL, [tensor])
                answered[0] += 1
            except Exception as exc:
                failures.append(str(exc))

    def stop_sending() -> None:
        stop.set()
        for thread in senders:
            thread.join()

    async def switch() -> None:
        async with LiveConfig(ServerAPI(explicit.grpc_url), MODEL) as live:
            for count in (3, 2):  # added, then removed (a removal waits for the instance to drain)
                before = answered[0]
                await live.apply(Candidate(count, 8, None))
                await asyncio.sleep(0.3)
                assert answered[0] > before  # requests went on through the switch
            # the original goes back once the load has stopped, as a tune puts it back: Triton
            # 2.51 took 3 to 150 s to take away an instance while all three senders kept at it
            stop_sending()

    senders = [threading.Thread(target=send) for _ in range(3)]
    for thread in senders:
        thread.start()
    try:
        asyncio.run(switch())
    finally:
        stop_sending()
    assert failures == [] and answered[0] > 50


def _wait_for_a_completed_run(db: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if Path(db.removeprefix("sqlite:///")).exists():
            try:
                with RunStore(db, auto_upgrade=False) as store:  # a reader never migrates
                    if any(run.status == "completed" for run in store.list_runs()):
                        return
            except SchemaError:  # the tune is still creating the schema
                pass
        time.sleep(0.2)
    raise AssertionError("no configuration was measured in time")


def test_a_tune_scales_with_instances_resumes_after_ctrl_c_and_puts_the_config_back(
    explicit: Served, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path}/tune.db"
    original = _served(explicit)
    argv = [
        "tune", "-m", MODEL, "-u", explicit.grpc_url, "--instances", "1..4", "--concurrency", "4",
        "--slo", "p99=15ms", *QUICK, "--db", db,
    ]  # fmt: skip
    proc = start_loadgen(*argv, "-q")
    try:
        _wait_for_a_completed_run(db, proc)  # then Ctrl-C, during the next configuration
        _, stderr = stop_loadgen(proc, signal.SIGINT, timeout_s=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert _served(explicit) == original  # put back after Ctrl-C
    tune_id = stderr.split("--resume ")[1].split()[0]
    resumed = loadgen(*argv, "--resume", tune_id, "--json", str(tmp_path / "tune.json"), "-q", timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    assert _served(explicit) == original  # and after success
    result = json.loads((tmp_path / "tune.json").read_text())
    configs = {c["config"].split()[0]: c for c in result["configs"]}
    assert list(configs) == [f"instances={k}" for k in (1, 2, 4)]  # 1..4 doubles, as --concurrency
    with RunStore(db) as store:
        runs = [r for r in store.list_runs() if r.labels.get("tune") == tune_id]
    first = [r for r in runs if r.labels["tune_config"].startswith("instances=1 ")]
    assert len(first) == 1 and first[0].id == configs["instances=1"]["run_id"]  # not measured again
    assert all(c["status"] == "completed" for c in result["configs"])
    for k in (1, 2, 4):  # throughput k/S: each instance serves one request per S
        (step,) = configs[f"instances={k}"]["steps"]
        assert step["throughput"] == pytest.approx(k / SERVICE_S, rel=0.10), (k, step)
        # below 4 instances some of the 4 requests in flight wait a whole S: p99 about 2 S
        assert step["meets_slo"] == (k == 4), (k, step)
    assert result["best"]["config"].startswith("instances=4 ") and "count: 4" in result["config_pbtxt"]
    assert "SLO p99 <= 15 ms" in resumed.stdout and "best: instances=4" in resumed.stdout
    report = loadgen_here("report", "--tune", tune_id, "-o", str(tmp_path / "tune.html"), "--db", db)
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "tune.html").read_text()
    assert f"Tune {tune_id} (SLO p99 &lt;= 15 ms)" in html and "Pareto front" in html
