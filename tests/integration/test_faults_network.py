"""A real network between loadgen and Triton, made slow, jittery, lossy or cut (issue 14).

The server runs in a network namespace of its own and the sweep reaches it over a link whose
faults the test sets (tests/netns.py: why it is a TUN pair and not netem). The promise: no
finished step is lost, no step the fault spoiled is stored as a good one, and each fault ends
as documented: slowness shows in the latencies, a short outage in the affected step's errors,
a long one fails the run with one line once a control-plane call gives up (10 s).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loadgen.results import RunStatus
from loadgen.server.install import default_model_repository
from loadgen.storage import RunRecord, RunStore, StepRecord
from tests.cli import loadgen, start_loadgen, wait_for_steps
from tests.integration.conftest import require_server
from tests.netns import Faults, Link, Namespace, namespace, netns_usable

pytestmark = [pytest.mark.faults, pytest.mark.server]

HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002  # the namespace's own ports: nothing else there
QUICK = ["-p", "500", "--warmup", "200", "-r", "2", "--no-metrics", "-q"]
ONE_WAY_S = 0.010
"""Delay added to each packet in each direction: a request's round trip is 20 ms longer."""
ADDED_RTT_US = 2 * ONE_WAY_S * 1e6
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Remote:
    """A Triton server (only the identity model) across the link."""

    ns: Namespace
    url: str
    """Its gRPC address, as ``-u`` takes it."""


def _ready(url: str) -> bool:
    try:
        with _NO_PROXY.open(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """``loadgen serve`` stops Triton in order on SIGTERM; killed (Triton too) if it hangs."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):  # Triton first: it runs in a session of its own
            for pid in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
                os.kill(int(pid), signal.SIGKILL)
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    """One server for the module: every test resets the link it faulted (see ``link``)."""
    if (why := netns_usable()) is not None:
        pytest.skip(why)
    require_server()
    tmp = tmp_path_factory.mktemp("netns")
    (tmp / "repo").mkdir()
    (tmp / "repo" / "identity").symlink_to(default_model_repository() / "identity")  # starts in ~2 s
    serve = [
        sys.executable, "-m", "loadgen", "serve", "--model-repository", str(tmp / "repo"),
        "--http-port", str(HTTP_PORT), "--grpc-port", str(GRPC_PORT), "--metrics-port", str(METRICS_PORT),
        "--log-file", str(tmp / "tritonserver.log"), "--host", "0.0.0.0",  # reached over the link
    ]  # fmt: skip
    with namespace() as ns, open(tmp / "serve.err", "wb") as err:
        server = subprocess.Popen(ns.command(*serve), stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 90
            while not _ready(f"http://{ns.there}:{HTTP_PORT}/v2/health/ready"):
                assert server.poll() is None, (tmp / "serve.err").read_text()
                assert time.monotonic() < deadline, "no ready server in the namespace within 90 s"
                time.sleep(0.2)
            yield Remote(ns, f"{ns.there}:{GRPC_PORT}")
        finally:
            _stop(server)


@pytest.fixture
def link(remote: Remote) -> Iterator[Link]:
    """The link to the server, healthy again after the test whatever happened."""
    remote.ns.link.faults = Faults()
    try:
        yield remote.ns.link
    finally:
        remote.ns.link.faults = Faults()


def _stored(db: str) -> tuple[RunRecord, list[StepRecord]]:
    with RunStore(db) as store:
        run = store.list_runs(limit=1)[0]
        return run, store.steps(run.id)


def _sweep(remote: Remote, tmp: Path, *load: str) -> StepRecord:
    """A quick sweep of one level that must complete; its one stored step."""
    db = f"sqlite:///{tmp / 'runs.db'}"
    result = loadgen("sweep", "-m", "identity", "-u", remote.url, *QUICK, *load, "--db", db, timeout=60)
    assert result.returncode == 0, result.stderr
    run, steps = _stored(db)
    assert run.status is RunStatus.COMPLETED and len(steps) == 1, (run, steps)
    return steps[0]


def test_delay_adds_the_round_trip_to_every_request(remote: Remote, link: Link, tmp_path: Path) -> None:
    link.faults = Faults(delay_s=ONE_WAY_S)
    step = _sweep(remote, tmp_path, "--concurrency", "2")
    assert step.error_count == 0 and step.request_count > 50, step
    assert step.lat_min_us is not None and step.lat_p50_us is not None
    assert step.lat_min_us >= 0.95 * ADDED_RTT_US  # no request beats the link
    assert 0.8 * ADDED_RTT_US <= step.lat_p50_us < ADDED_RTT_US + 50_000, step


def test_jitter_widens_the_spread(remote: Remote, link: Link, tmp_path: Path) -> None:
    # +-5 ms on each packet each way: a round trip takes 20 ms +- up to 10 ms
    link.faults = Faults(delay_s=ONE_WAY_S, jitter_s=ONE_WAY_S / 2)
    step = _sweep(remote, tmp_path, "--concurrency", "2")
    assert step.error_count == 0 and step.request_count > 50, step
    assert step.lat_min_us is not None and step.lat_p50_us is not None and step.lat_p99_us is not None
    assert 0.8 * ADDED_RTT_US <= step.lat_p50_us < ADDED_RTT_US + 50_000, step
    assert step.lat_p99_us - step.lat_p50_us >= 3_000, step  # seen: 7.6-8.6 ms (1-5 ms with no jitter)
    # the lower half spreads too, which a busy machine never fakes (it only adds latency): seen
    # 9-11 ms with jitter, 0.6 ms without, and round trips faster than the delay alone
    assert step.lat_p50_us - step.lat_min_us >= 4_000, step
    assert step.lat_min_us < ADDED_RTT_US - 2_000, step


def test_loss_is_retransmitted_and_shows_in_the_tail(remote: Remote, link: Link, tmp_path: Path) -> None:
    link.faults = Faults(loss=0.05)
    dropped = link.dropped
    # four connections: with two, both were once stalled in retransmissions for the whole step
    step = _sweep(remote, tmp_path, "--concurrency", "4")
    assert link.dropped > dropped  # packets were lost ...
    # ... and TCP resent them (throughput varies wildly: each loss stalls the connection >= 200 ms)
    assert step.error_count == 0 and step.request_count > 0, step
    assert step.lat_p50_us is not None and step.lat_max_us is not None
    assert step.lat_p50_us < 20_000, step  # most requests lost nothing
    assert step.lat_max_us >= 150_000, step  # some waited for a retransmission timeout (200 ms)


def test_a_short_cut_counts_its_failures_in_the_step(remote: Remote, link: Link, tmp_path: Path) -> None:
    """A 3 s outage with ``--request-timeout 2``: the requests it caught fail as DEADLINE_EXCEEDED in
    the step it hit, the step is stored unstable with them, and the sweep goes on."""
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    proc = start_loadgen(
        "sweep", "-m", "identity", "-u", remote.url, "--concurrency", "1,2", "-p", "1000", "--warmup", "200",
        "-r", "3", "--request-timeout", "2", "--no-metrics", "-q", "--db", db,
    )  # fmt: skip
    try:
        wait_for_steps(db, 1, proc)
        time.sleep(0.5)  # into the second step's first window
        link.faults = Faults(cut=True)
        time.sleep(3.0)
        link.faults = Faults()
        restored = time.monotonic()
        out, err = proc.communicate(timeout=30)
        after_s = time.monotonic() - restored
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert after_s < 10, after_s  # 3 s of windows and TCP's retransmission back-off, no more
    run, (before, hit) = _stored(db)
    assert run.status is RunStatus.COMPLETED
    assert before.error_count == 0 and before.request_count > 0 and before.interrupted is None
    assert hit.interrupted is None and not hit.stable and hit.request_count > 0
    assert hit.error_count >= 2, hit  # at least the two requests in flight when the link went
    assert all(reason.startswith("DEADLINE_EXCEEDED") for reason in hit.errors), hit.errors
    assert sum(w.error_count for w in hit.windows) == hit.error_count  # in the windows it fell in
    assert "DEADLINE_EXCEEDED" in out  # and the user sees why under the table


def test_a_long_cut_fails_the_run_keeping_finished_steps(remote: Remote, link: Link, tmp_path: Path) -> None:
    """Cut until loadgen gives up: the per-window /stats call times out after 10 s and the run
    fails with one line (exit 1); the step finished before is stored, the cut one only marked."""
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    proc = start_loadgen(
        "sweep", "-m", "identity", "-u", remote.url, "--concurrency", "1,2", *QUICK,
        "--request-timeout", "2", "--db", db,
    )  # fmt: skip
    try:
        wait_for_steps(db, 1, proc)
        link.faults = Faults(cut=True)
        cut = time.monotonic()
        _, err = proc.communicate(timeout=40)
        cut_s = time.monotonic() - cut
    finally:
        link.faults = Faults()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    assert 9.5 <= cut_s < 25, cut_s  # the control plane's 10 s, then in-flight requests expire (2 s)
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if "failed:" in line]
    assert "server lost mid-run" in line and "did not answer" in line, err
    run, steps = _stored(db)
    assert run.status is RunStatus.FAILED and run.error is not None
    assert run.error.startswith("server lost mid-run"), run.error
    finished, *cut_short = steps
    assert finished.concurrency == 1 and finished.interrupted is None, finished
    assert finished.error_count == 0 and finished.request_count > 0, finished
    assert all(step.interrupted is not None for step in cut_short), cut_short  # never stored as good
