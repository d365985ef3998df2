"""``loadgen sweep --exporter-port`` as a user runs it: a taken port, and a live sweep scraped directly."""

from __future__ import annotations

import socket
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadgen.exporter import METRIC_NAMES
from loadgen.server import EmbeddedServer
from tests.cli import free_port, loadgen_here, one_line_error, start_loadgen


def test_a_taken_exporter_port_exits_2_with_one_line_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        db = tmp_path / "runs.db"
        # no server at 127.0.0.1:1: the port is checked first, and nothing is recorded
        result = loadgen_here(
            "sweep",
            "-m",
            "identity",
            "-u",
            "127.0.0.1:1",
            "--exporter-port",
            str(port),
            "--db",
            f"sqlite:///{db}",
        )
    assert result.returncode == 2
    line = one_line_error(result)
    assert f"port {port}" in line and "--exporter-port" in line
    assert not db.exists()


def _scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_a_live_sweep_serves_its_metrics_and_stops_serving_at_the_end(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    port = free_port()
    db = tmp_path / "runs.db"
    proc = start_loadgen(
        "sweep", "-m", "identity", "-u", triton.grpc_url, "--no-metrics",
        "--concurrency", "2,4", "-p", "500", "--warmup", "200", "-r", "3", "--exporter-port", str(port),
        "--db", f"sqlite:///{db}", "-q",
    )  # fmt: skip
    scrapes = []
    try:
        while proc.poll() is None:
            samples = _scrape(port)
            if samples is not None:
                scrapes.append(samples)
            time.sleep(0.1)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert _scrape(port) is None  # the server is shut down with the sweep
    with_run = [s for s in scrapes if "loadgen_run_info" in s]
    assert with_run, f"no scrape saw the run ({len(scrapes)} scrapes)"
    last = with_run[-1]
    with sqlite3.connect(db) as conn:
        (run_id,) = conn.execute("SELECT MAX(id) FROM runs").fetchone()
        stored = conn.execute("SELECT SUM(request_count) FROM steps WHERE run_id = ?", (run_id,)).fetchone()[
            0
        ]
        (version,) = conn.execute("SELECT model_version FROM runs WHERE id = ?", (run_id,)).fetchone()
    ((labels, _),) = last["loadgen_run_info"].items()
    assert dict(labels) == {
        "run_id": str(run_id),
        "model": "identity",
        "version": version,
        "scenario": "concurrency",
    }
    base = (("model", "identity"), ("version", version))
    (requests,) = last["loadgen_requests_total"].values()
    assert 0 < requests <= stored
    # (step, target) as scraped: (-1, 0) between the run's creation and its first step, then each
    # level in turn, never back
    seen = [(s["loadgen_step_index"][base], s["loadgen_target_concurrency"][base]) for s in with_run]
    assert seen == sorted(seen)
    assert set(seen) <= {(-1.0, 0.0), (0.0, 2.0), (1.0, 4.0)} and (1.0, 4.0) in seen
    names = {name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for name in last}
    assert set(METRIC_NAMES) - {"loadgen_request_failures_total", "loadgen_inference_failures_total"} <= names


@pytest.mark.parametrize("bad", ["0", "70000"])
def test_an_impossible_exporter_port_is_a_usage_error(bad: str, tmp_path: Path) -> None:
    result = loadgen_here("sweep", "-m", "identity", "-u", "127.0.0.1:1", "--exporter-port", bad)
    assert result.returncode == 2
    assert "1..65535" in one_line_error(result)
