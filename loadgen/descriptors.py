"""Enough file descriptors for a sweep's connections, asked for before it starts.

Over HTTP/1.1 every in-flight request holds a connection, so 4,096 in flight need 4,096
sockets, and many systems give a process 1,024 by default (a soft limit it may raise up to its
hard limit). A sweep raises its soft limit as far as its heaviest step needs, or stops before it
starts with one line: better than thousands of "Too many open files" errors mid-step.
"""

from __future__ import annotations

import math
import resource

from loadgen.config import SweepSettings
from loadgen.errors import ConfigError
from loadgen.transports.grpc_codec import SLOTS_PER_CHANNEL

SPARE = 256
"""Descriptors beside the connections: the database, the server API, pipes to workers, logs."""


def connections_needed(settings: SweepSettings, workers: int = 1) -> int:
    """The most connections one process opens in a step of ``settings`` shared by ``workers``
    (a descriptor limit is per process: each worker has its part)."""
    closed = settings.scenario == "concurrency"
    in_flight = math.ceil((int(max(settings.levels)) if closed else settings.max_in_flight) / workers)
    if settings.protocol == "http":
        return in_flight
    if settings.max_connections is not None:
        return min(math.ceil(settings.max_connections / workers), in_flight)
    return math.ceil(in_flight / SLOTS_PER_CHANNEL)


def ensure_descriptors(settings: SweepSettings, workers: int) -> None:
    """Raise this process's soft descriptor limit (local workers inherit it) to what each process
    of a sweep of ``settings`` over ``workers`` needs. Ray actors live on other hosts, with limits
    of their own: not checked here."""
    if settings.ray:
        return
    connections = connections_needed(settings, workers)
    needed = connections + SPARE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or needed <= soft:
        return
    if hard != resource.RLIM_INFINITY and needed > hard:
        raise ConfigError(
            f"{connections} connections need about {needed} file descriptors, and this "
            f"process may open {hard} at most (ulimit -Hn): raise the hard limit, or lower the load"
        )
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{connections} connections need about {needed} file descriptors: {exc}") from None
