"""Which event loop runs loadgen: uvloop where it is installed, else asyncio's own.

uvloop is an optional dependency (``pip install 'loadgen[fast]'``) because it measured faster
on the client's hot path (``benchmarks/null_server.py``: HTTP 1.3x the requests per client core,
gRPC 1.1x, and a lower open-loop send lag); everything runs on plain asyncio too.
``LOADGEN_EVENT_LOOP=asyncio`` (or ``uvloop``) chooses for a process and its workers, which
inherit the environment; it is a process's choice, not a sweep's, so it is not a sweep option.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from loadgen.errors import ConfigError

ENV = "LOADGEN_EVENT_LOOP"
CHOICES = ("auto", "asyncio", "uvloop")
T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None for asyncio's default loop."""
    choice = os.environ.get(ENV) or "auto"
    if choice not in CHOICES:
        raise ConfigError(f"{ENV}={choice!r}: must be {', '.join(CHOICES)}")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                f"{ENV}=uvloop: uvloop is not installed (pip install 'loadgen[fast]')"
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(coro: Coroutine[Any, Any, T], *inner: Coroutine[Any, Any, Any]) -> T:
    """``asyncio.run`` on the chosen loop. A bad choice closes ``coro`` and the ``inner``
    coroutines it would have awaited: never started, they do not warn that they were not."""
    try:
        factory = loop_factory()
    except ConfigError:
        for never in (coro, *inner):
            never.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)
