"""``loadgen serve``: run an embedded server in the foreground until a signal or its death.

Signals become an exception (_StopRequested) so that the server is stopped in order;
a second signal while stopping kills it instead of waiting.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any, BinaryIO, TextIO

from loadgen.errors import EXIT_OK
from loadgen.server.embedded import EmbeddedServer
from loadgen.server.triton_log import error_lines


class _StopRequested(BaseException):
    """Raised from our SIGINT/SIGTERM handler; BaseException so that `except Exception` can't eat it."""


def serve_forever(server: EmbeddedServer, *, stream_log: bool = True, out: TextIO | None = None) -> int:
    """Serve until SIGINT/SIGTERM (clean stop, returns 0) or until the server dies on its own.

    Starts the server unless it is already running; startup failures raise
    EmbeddedServerError. A server that dies on its own yields its exit code, or 128+N if
    signal N killed it (the shell's convention). Signal handlers are only installed from
    the main thread; elsewhere the caller must stop the server.
    """
    out = out if out is not None else sys.stdout

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise _StopRequested(signum)

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        try:
            return _serve(server, stream_log, out)
        except _StopRequested:
            print("stopping tritonserver ...", file=sys.stderr, flush=True)
            server.stop()
            return EXIT_OK
    except _StopRequested:  # a second signal while stopping: stop waiting for a graceful exit
        server.kill()
        server.stop()
        return EXIT_OK
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        server.stop()


def _serve(server: EmbeddedServer, stream_log: bool, out: TextIO) -> int:
    if not server.running:
        server.start()
    models = ", ".join(server.list_models()) or "none"
    print(
        f"ready: HTTP {server.http_url}  gRPC {server.grpc_url}  metrics {server.metrics_url}  "
        f"(models: {models})",
        file=out,
        flush=True,
    )
    log_path = server.log_path
    assert log_path is not None
    with open(log_path, "rb") as log:
        log.seek(0, os.SEEK_END)  # startup chatter stays in the file; the ready line sums it up
        while server.running:
            if stream_log:
                _copy_new(log, out)
            time.sleep(0.2)
        if stream_log:
            _copy_new(log, out)
    lines = error_lines(server.log_text())
    rc = server.stop()
    assert rc is not None
    why = f": {'; '.join(lines)}" if lines else ""
    print(
        f"tritonserver exited unexpectedly with code {rc}{why} (log: {log_path})", file=sys.stderr, flush=True
    )
    return 128 - rc if rc < 0 else rc


def _copy_new(log: BinaryIO, out: TextIO) -> None:
    chunk: bytes = log.read()
    if chunk:
        out.write(chunk.decode("utf-8", errors="replace"))
        out.flush()
