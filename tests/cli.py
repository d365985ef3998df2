"""The ``loadgen`` command run as a user runs it, in a subprocess: the one helper every test uses."""

from __future__ import annotations

import io
import signal
import socket
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from loadgen.errors import SchemaError
from loadgen.storage import RunStore


def loadgen(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``loadgen ARGS`` to the end; its exit code, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "loadgen", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def loadgen_here(*args: str) -> subprocess.CompletedProcess[str]:
    """As :func:`loadgen`, in this process (no interpreter start, about a second saved a call): for
    commands that only read or refuse, which keep no state between calls."""
    from loadgen.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    return subprocess.CompletedProcess(["loadgen", *args], code, out.getvalue(), err.getvalue())


_RUN_WITH_SIGINT = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('loadgen', run_name='__main__', alter_sys=True)"
)
"""``python -m loadgen`` with Ctrl-C restored first: a shell's background job starts with SIGINT
ignored, and Python would keep it ignored. Restored in the child's own code, not by a
``preexec_fn``: that makes ``Popen`` fork() where it would vfork(), and grpcio (1.80 and later)
restarts its poller in a forked child, which then dies of SIGABRT on the epoll descriptor
``close_fds`` closed, before it runs anything (grpc/grpc#43055; seen here once the test process
held gRPC channels)."""


def start_loadgen(*args: str) -> subprocess.Popen[str]:
    """Start ``loadgen ARGS`` in the background (Ctrl-C works as in a terminal)."""
    return subprocess.Popen(
        [sys.executable, "-c", _RUN_WITH_SIGINT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_loadgen(
    proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout_s: float = 30
) -> tuple[str, str]:
    """Signal a started command and collect its output (killed if it does not stop in time)."""
    proc.send_signal(sig)
    try:
        return proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one ``loadgen: error:`` line a failed command printed (and no traceback)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("loadgen: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def wait_for_steps(db: str, count: int, proc: subprocess.Popen[str], timeout_s: float = 120) -> int:
    """Poll the database (as another reader would) until the run has ``count`` committed steps."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if Path(db.removeprefix("sqlite:///")).exists():
            try:
                with RunStore(db, auto_upgrade=False) as store:  # a reader never migrates
                    runs = store.list_runs()
            except SchemaError:  # the sweep is still creating the schema
                continue
            if runs and runs[0].step_count >= count:
                return runs[0].id
        time.sleep(0.2)
    raise AssertionError("the sweep stored no step in time")


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


OPEN_AT_ONCE = """
import sys, time
from loadgen.storage import RunStore
start = float(sys.argv[1])
for url in sys.argv[2:]:
    time.sleep(max(0.0, start - time.time() - 0.05))
    while time.time() < start:  # spin the last moment: a sleep's wake-up is too loose to collide
        pass
    RunStore(url).close()
    start += 0.3
"""


def open_at_once(*urls: str, processes: int = 4) -> list[subprocess.CompletedProcess[str]]:
    """``processes`` loadgens opening each of ``urls`` at the same instant (after their imports),
    one URL after the other: as sweeps started together on a new database do. Several new
    databases make a lost race likely to show: the window is a few milliseconds wide."""
    start = time.time() + 3.0
    running = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AT_ONCE, repr(start), *urls],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    return [subprocess.CompletedProcess(p.args, p.wait(60), *p.communicate()) for p in running]
