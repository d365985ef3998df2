"""What a tritonserver leaves behind when it does not stop in order, and who removes it.

The server runs in a session of its own, so neither Ctrl-C nor our exit reaches it:
servers still running when we exit are stopped from an atexit hook. And after a crash
or SIGKILL nobody else removes the Python backend stubs or their shared-memory regions.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import Protocol

_SHM_PREFIX = "triton_python_backend_shm_region_"


class _Stoppable(Protocol):
    def stop(self, timeout_s: float = ...) -> int | None: ...


_LIVE: set[_Stoppable] = set()
_LIVE_LOCK = threading.Lock()


def register_live(server: _Stoppable) -> None:
    """Stop this server at exit unless unregister_live is called first."""
    with _LIVE_LOCK:
        _LIVE.add(server)


def unregister_live(server: _Stoppable) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(server)


@atexit.register
def _stop_leftovers() -> None:
    # The server runs in its own session, so neither Ctrl-C nor our exit reaches it.
    with _LIVE_LOCK:
        leftovers = list(_LIVE)
    for server in leftovers:
        with contextlib.suppress(Exception):
            server.stop(timeout_s=10.0)


def _processes_started_from(directory: Path) -> dict[int, list[str]]:
    """argv of processes whose executable lies under directory (Linux /proc; else none).

    Our backend directory is a fresh temp dir, so this can only find our own stubs,
    unlike a process-group kill after the group leader's pid may have been reused.
    """
    prefix = f"{directory}{os.sep}"
    found: dict[int, list[str]] = {}
    with contextlib.suppress(OSError), os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(os.path.join(entry.path, "cmdline"), "rb") as f:
                    raw = f.read()
            except OSError:
                continue
            argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
            if argv and argv[0].startswith(prefix):
                found[int(entry.name)] = argv
    return found


class BackendStubs:
    """The Python backend stubs one server started from its private backend directory."""

    def __init__(self) -> None:
        self._shm_regions: set[str] = set()

    def find(self, directory: Path | None) -> list[int]:
        """Pids of our backend stubs; also remembers their shm regions for reap."""
        if directory is None:
            return []
        stubs = _processes_started_from(directory)
        for argv in stubs.values():
            self._shm_regions.update(a for a in argv if a.startswith(_SHM_PREFIX) and "/" not in a)
        return list(stubs)

    def reap(self, directory: Path | None) -> None:
        """SIGKILL the stubs still running and remove every shm region seen so far."""
        # After a crash or SIGKILL nobody else removes these: stubs linger for a while and
        # their shared-memory regions (1 MiB+ each in /dev/shm) would leak for good.
        for pid in self.find(directory):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for region in self._shm_regions:
            with contextlib.suppress(OSError):
                (Path("/dev/shm") / region).unlink()
        self._shm_regions.clear()
