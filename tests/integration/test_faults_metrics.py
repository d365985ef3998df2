"""Faults of the metrics endpoint: a step goes on and measures as usual, and its failed scrapes are
counted and stored (``steps.metrics_failed_scrapes``).

A tiny HTTP server on 127.0.0.1 plays the endpoint: one that answers 200 with text that is not
Prometheus', one that answers 500, and one that accepts and never answers. A scrape never
outlives its interval, so even the hung one is counted, and stopping the scraper at a step's
end cancels the scrape in flight at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from loadgen.scrape import MetricsScraper
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore
from tests.cli import loadgen

pytestmark = pytest.mark.faults

FAULTS = ("garbage", "error", "hang")


class _Endpoint(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fault: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fault = fault
        self.scrapes = 0
        self.release = threading.Event()
        """Set at the end: hung requests return (and their threads end)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/metrics"


class _Handler(BaseHTTPRequestHandler):
    server: _Endpoint

    def do_GET(self) -> None:
        self.server.scrapes += 1
        if self.server.fault == "hang":
            self.server.release.wait(60)
            self.close_connection = True
            return
        body = b"<html><body>not Prometheus text</body></html>\n"
        self.send_response(500 if self.server.fault == "error" else 200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextmanager
def _endpoint(fault: str) -> Iterator[_Endpoint]:
    server = _Endpoint(fault)
    thread = threading.Thread(target=server.serve_forever, name=f"metrics-{fault}", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.mark.parametrize("fault", FAULTS)
def test_a_faulty_metrics_endpoint_is_counted_and_the_step_measured(
    fault: str, triton: EmbeddedServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path}/runs.db"
    with _endpoint(fault) as endpoint:
        result = loadgen(
            "sweep", "-m", "identity", "-u", triton.grpc_url, "--concurrency", "1", "-p", "300",
            "--warmup", "100", "-r", "2", "-q", "--metrics-url", endpoint.url, "--metrics-interval", "100",
            "--db", db,
        )  # fmt: skip
        scrapes = endpoint.scrapes
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    with RunStore(db, auto_upgrade=False) as store:
        (run,) = store.list_runs()
        (step,) = store.steps(run.id)
        samples = store.metric_samples(run_id=run.id)
    assert step.request_count > 0 and step.error_count == 0
    assert samples == []
    assert step.metrics_failed_scrapes is not None
    # every scrape failed; the one in flight when the step ended was cancelled, not counted
    assert 3 <= step.metrics_failed_scrapes <= scrapes


def test_stopping_cancels_a_hung_scrape_at_once() -> None:
    async def scrape(url: str) -> tuple[int, float]:
        scraper = MetricsScraper(url, interval_s=0.1)
        scraper.start()
        await asyncio.sleep(0.55)
        started = time.monotonic()
        await scraper.close()
        return scraper.failures, time.monotonic() - started

    with _endpoint("hang") as endpoint:
        failures, stopping_s = asyncio.run(scrape(endpoint.url))
    assert failures >= 3  # each timed out after one interval (0.1 s), not the 5 s bound
    assert stopping_s < 0.5
