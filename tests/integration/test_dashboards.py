"""Every dashboard query against real data: a real Prometheus scraping the embedded Triton and a
loadgen sweep's exporter, and the SQLite runs database that sweep wrote.

Each PromQL expression must parse and return data, the GPU panels included: the embedded
Triton runs on CPU, so Prometheus and the sweep scrape its page with a real GPU server's
``nv_gpu_*`` families appended (tests/gpu_metrics.py), and every GPU panel must show that GPU by
its ``gpu_uuid``. Set LOADGEN_REQUIRE_PROMETHEUS=1 to fail instead of skipping when Debian's
``prometheus`` package is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loadgen.provisioning import DASHBOARD_FILES, dashboard_json
from loadgen.server import EmbeddedServer
from tests.cli import free_port, loadgen
from tests.gpu_metrics import GPU_FAMILIES, GPU_UUID, gpu_triton_metrics

PROMETHEUS_MISSING = "prometheus not installed (Debian: apt-get install prometheus)"
RATE_INTERVAL = "5s"
"""What Grafana's $__rate_interval becomes here: 5 scrapes at the tests' 1 s interval."""
GPU_METRIC = re.compile(r"\bnv_(gpu|energy)_")


def prometheus_binary() -> str | None:
    """Debian's prometheus; a skip (or, with LOADGEN_REQUIRE_PROMETHEUS, a failure) when missing."""
    found = shutil.which("prometheus")
    if found is None and os.environ.get("LOADGEN_REQUIRE_PROMETHEUS"):
        pytest.fail(PROMETHEUS_MISSING)
    return found


def _get(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@dataclass
class Stack:
    """What the module's one sweep left: the runs database and, if installed, a Prometheus."""

    db: Path
    run_id: int
    prometheus_url: str | None = None
    at: float = 0.0
    """A time when the exporter was up (its last scraped sample): instant queries are evaluated there."""

    def query(self, expr: str) -> dict[str, Any]:
        assert self.prometheus_url is not None
        params = urllib.parse.urlencode({"query": expr, "time": f"{self.at:.3f}"})
        try:
            result: dict[str, Any] = _get(f"{self.prometheus_url}/api/v1/query?{params}")
        except urllib.error.HTTPError as exc:  # 400: the expression did not parse
            raise AssertionError(f"{expr}: {exc.read().decode()}") from None
        return result


def _start_prometheus(binary: str, tmp: Path, targets: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    config = tmp / "prometheus.yml"
    jobs = "".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
        for job, target in targets.items()
    )
    config.write_text(f"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{jobs}")
    port = free_port()
    with (tmp / "prometheus.log").open("wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp / "prometheus.log").read_text()
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("prometheus did not become ready in 30 s")


@pytest.fixture(scope="module")
def stack(triton: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One short sweep (concurrency 1, 2; 1 s windows) with the exporter on, scraped by Prometheus."""
    tmp = tmp_path_factory.mktemp("dashboards")
    binary = prometheus_binary()
    exporter_port = free_port()
    prometheus: subprocess.Popen[bytes] | None = None
    prometheus_url = None
    gpu_page = contextlib.ExitStack()
    metrics_url = gpu_page.enter_context(gpu_triton_metrics(triton.metrics_url))
    if binary is not None:
        triton_target = urllib.parse.urlsplit(metrics_url).netloc
        prometheus, prometheus_url = _start_prometheus(
            binary, tmp, {"triton": triton_target, "loadgen": f"127.0.0.1:{exporter_port}"}
        )
    try:
        db = tmp / "runs.db"
        sweep = loadgen(
            "sweep", "-m", "identity", "-u", triton.grpc_url,
            "--metrics-url", metrics_url, "--concurrency", "1,2", "-p", "1000", "--warmup", "500",
            "-r", "3", "--label", "plan=ops", "--label", "job=nightly",
            "--exporter-port", str(exporter_port), "--db", f"sqlite:///{db}", "-q",
            timeout=120,
        )  # fmt: skip
        assert sweep.returncode == 0, sweep.stderr
        with sqlite3.connect(db) as conn:
            (run_id,) = conn.execute("SELECT MAX(id) FROM runs").fetchone()
        result = Stack(db=db, run_id=run_id, prometheus_url=prometheus_url)
        if prometheus_url is not None:
            # the exporter is gone now and Prometheus has marked its series stale: evaluate at its last sample
            params = urllib.parse.urlencode({"query": "loadgen_step_index[10m]"})
            series = _get(f"{prometheus_url}/api/v1/query?{params}")["data"]["result"]
            assert series, "Prometheus never scraped the exporter"
            result.at = float(series[0]["values"][-1][0])
        yield result
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=30)
        gpu_page.close()


def _promql_targets() -> list[tuple[str, str, str]]:
    return [
        (name, panel["title"], target["expr"])
        for name in DASHBOARD_FILES
        for panel in dashboard_json(name)["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def _sql_targets() -> list[tuple[str, str, str]]:
    return [
        (name, panel["title"], target["rawQueryText"])
        for name in DASHBOARD_FILES
        for panel in dashboard_json(name)["panels"]
        for target in panel.get("targets", [])
        if "rawQueryText" in target
    ]


def _promql(expr: str) -> str:
    return expr.replace("$__rate_interval", RATE_INTERVAL).replace("$model", "identity")


def _sql(sql: str) -> str:
    now_ms = int(time.time() * 1000) + 3_600_000
    return (
        sql.replace("${model:sqlstring}", "'identity'")
        .replace("${plan:sqlstring}", "'ops'")
        .replace("${job:sqlstring}", "'nightly'")
        .replace("$__from", "0")
        .replace("$__to", str(now_ms))
    )


def test_dashboards_hold_the_queries_the_issue_asks_for() -> None:
    promql = _promql_targets()
    sql = _sql_targets()
    assert len(promql) >= 25 and len(sql) == 4
    for needed in (
        "nv_inference_count",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us",
        "nv_inference_exec_count",
        "nv_inference_pending_request_count",
        "nv_inference_request_failure",
        "nv_gpu_utilization",
        "nv_gpu_memory_used_bytes",
        "nv_gpu_power_usage",
        "nv_cpu_utilization",
        "nv_cpu_memory_used_bytes",
        "histogram_quantile",
        "loadgen_in_flight_requests",
        "loadgen_request_failures_total",
    ):
        assert any(needed in expr for _, _, expr in promql), needed


def test_every_promql_panel_parses_and_returns_data(stack: Stack) -> None:
    if stack.prometheus_url is None:
        pytest.skip(PROMETHEUS_MISSING)
    empty = []
    for name, title, expr in _promql_targets():
        answer = stack.query(_promql(expr))
        assert answer["status"] == "success", (name, title, answer)
        series = answer["data"]["result"]
        if GPU_METRIC.search(expr):  # the GPU of the appended page, by its uuid
            assert [item["metric"].get("gpu_uuid") for item in series] == [GPU_UUID], (title, series)
            continue
        if not series:
            empty.append(f"{name} / {title}: {expr}")
        for item in series:
            if "model" in item["metric"]:
                assert item["metric"]["model"] == "identity"
    assert empty == []


def test_model_variables_list_the_model(stack: Stack) -> None:
    if stack.prometheus_url is None:
        pytest.skip(PROMETHEUS_MISSING)
    for name in ("triton-server.json", "loadgen-live.json"):
        (variable,) = [v for v in dashboard_json(name)["templating"]["list"] if v["name"] == "model"]
        metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["query"]).groups()  # type: ignore[union-attr]
        params = urllib.parse.urlencode({"match[]": metric})
        values = _get(f"{stack.prometheus_url}/api/v1/label/{label}/values?{params}")["data"]
        assert "identity" in values


def test_exporter_in_prometheus_agrees_with_the_runs_database(stack: Stack) -> None:
    if stack.prometheus_url is None:
        pytest.skip(PROMETHEUS_MISSING)
    with sqlite3.connect(stack.db) as conn:
        stored = conn.execute(
            "SELECT SUM(request_count) FROM steps WHERE run_id = ?", (stack.run_id,)
        ).fetchone()[0]

    def value(expr: str) -> float:
        (item,) = stack.query(expr)["data"]["result"]
        return float(item["value"][1])

    requests = value('loadgen_requests_total{model="identity"}')
    assert 0 < requests <= stored  # the last scrape may precede the last window
    assert value('loadgen_request_latency_seconds_count{model="identity"}') == requests
    (info,) = stack.query("loadgen_run_info")["data"]["result"]
    assert info["metric"]["run_id"] == str(stack.run_id)
    assert info["metric"]["scenario"] == "concurrency"


def test_every_history_query_returns_rows_from_a_real_runs_database(stack: Stack) -> None:
    with sqlite3.connect(stack.db) as conn:
        for name, title, sql in _sql_targets():
            rows = conn.execute(_sql(sql)).fetchall()
            assert rows, (name, title)
            if title == "Latest run":
                assert [(row[0], row[2]) for row in rows] == [(stack.run_id, 1), (stack.run_id, 2)]
            if title in ("Peak throughput per run", "p99 latency at peak throughput"):
                ((epoch, model, value),) = rows
                assert abs(epoch - time.time()) < 600 and model == "identity" and value > 0
        variables = dashboard_json("loadgen-history.json")["templating"]["list"]
        found = {
            v["name"]: [row[0] for row in conn.execute(v["query"])] for v in variables if v["type"] == "query"
        }
    assert found == {"model": ["identity"], "plan": ["ops"], "job": ["nightly"]}


def test_the_gpu_series_are_stored_with_the_run_and_plotted_in_its_report(stack: Stack) -> None:
    from analysis.frames import load_run_data
    from analysis.report import build_report

    with sqlite3.connect(stack.db) as conn:
        stored = conn.execute(
            "SELECT DISTINCT name, labels FROM metric_samples "
            "WHERE name LIKE 'nv_gpu_%' OR name LIKE 'nv_energy_%'"
        ).fetchall()
    assert sorted(stored) == sorted((name, json.dumps({"gpu_uuid": GPU_UUID})) for name in GPU_FAMILIES)
    report = build_report([load_run_data(f"sqlite:///{stack.db}", stack.run_id)])
    (figure,) = [f.figure for f in report.figures if f.name.endswith("server-metrics")]
    titles = [a.text for a in figure.layout.annotations]
    for title in ("GPU utilization (%)", "GPU memory used (GiB)", "GPU power (W)"):
        assert title in titles
    gpu_traces = [t for t in figure.data if t.name.startswith("GPU ")]
    assert len(gpu_traces) == 3 and all(t.name == f"GPU {GPU_UUID[:12]}" for t in gpu_traces)
    memory = next(t for t in gpu_traces if max(t.y) > 1)  # 4930404352 bytes in GiB
    assert max(memory.y) == pytest.approx(4930404352 / 2**30)
