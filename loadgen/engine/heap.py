"""The heap that exists before a load starts, kept out of the garbage collector's way.

CPython's oldest-generation collection walks every tracked object: with numpy, pandas, scipy,
SQLAlchemy and the Triton client imported, that is 65-100 ms (measured on the open loop at 24,000
req/s), during which nothing is sent and every answer waits. Objects that exist before the load
starts (modules, settings, prepared requests) live as long as it does, so they are frozen into
the permanent generation while it runs (``gc.freeze``, made for this) and the collector only walks
what the load itself allocates; they go back when the last load in the process ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_depth = 0
"""Loads running in this process (several models measured at once each run a sweep)."""


@contextmanager
def frozen() -> Iterator[None]:
    global _depth
    if _depth == 0:
        gc.freeze()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            gc.unfreeze()
