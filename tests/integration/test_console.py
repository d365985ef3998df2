"""``loadgen sweep`` in a real terminal, read as a person reads it: tmux runs the command in a pane
(a tty, so rich draws its live line) and ``capture-pane`` returns what is on screen."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadgen.server import EmbeddedServer

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None and not os.environ.get("LOADGEN_REQUIRE_SERVER"),
    reason="tmux is not installed",
)


class Pane:
    """One tmux pane on a private server socket (never the user's own tmux)."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", "t")

    def wait_for(self, pattern: str, timeout_s: float = 120) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            screen = self.screen()
            if re.search(pattern, screen, re.MULTILINE):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} never showed; the screen:\n{self.screen()}")


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Pane]:
    pane = Pane(f"loadgen-test-{uuid.uuid4().hex[:8]}")
    pane.tmux("new-session", "-d", "-s", "t", "-x", "200", "-y", "50", "-c", str(tmp_path))
    try:
        yield pane
    finally:
        subprocess.run(["tmux", "-L", pane.socket, "kill-server"], capture_output=True, check=False)


def test_finished_steps_stay_on_screen_with_an_eta_and_the_end_says_what_next(
    triton: EmbeddedServer, tmp_path: Path, pane: Pane
) -> None:
    db = tmp_path / "runs.db"
    command = [
        sys.executable, "-m", "loadgen", "sweep", "-m", "identity", "-u", triton.grpc_url,
        "--concurrency", "1..4", "-p", "600ms", "--warmup", "200ms", "-r", "3", "--no-metrics",
        "--db", str(db),
    ]  # fmt: skip
    pane.tmux("send-keys", "-t", "t", f"{shlex.join(command)}; echo EXIT=$?", "Enter")

    # while concurrency 2 runs, concurrency 1's row is on screen above the live line and its ETA
    during = pane.wait_for(r"^concurrency 2 .* 1/3 .*ETA ~\d+s")
    assert re.search(r"^\s+concurrency 1\s+[\d,.]+ infer/s\s+p50 [\d.]+ ms\s+p99 [\d.]+ ms", during, re.M), (
        during
    )

    end = pane.wait_for(r"^EXIT=\d+", timeout_s=120)
    assert "EXIT=0" in end, end
    rows = re.findall(r"^\s+concurrency (\d+)\s+[\d,.]+ infer/s", end, re.MULTILINE)
    assert rows == ["1", "2", "4"], end  # every finished step's row, in order, still there
    assert "ETA ~" not in end, "the live line goes when the sweep ends"
    run = re.search(r"loadgen: stored run (\d+) \(identity\) in (sqlite:///\S+)", end)
    assert run is not None and run[2] == f"sqlite:///{db}", end
    assert f"loadgen: next: loadgen report {run[1]} -o report.html --db 'sqlite:///{db}'" in end
