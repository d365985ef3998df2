"""``--cancel-after-ms`` / ``--cancel-after-responses``: cancel a share of streamed requests, to see
how the server frees what a cancelled generation held. A cancelled request is counted apart,
never as an error or a success: its stream is reset (HTTP/2 RST_STREAM, a closed HTTP
connection) and the slot goes on with its next request."""

from __future__ import annotations

import asyncio
from typing import Any

from loadgen.transports.base import Arrivals, StreamSender

CANCELLED = "(cancelled)"
"""What :meth:`Canceller.send` returns for a request it cancelled (never an error reason)."""


class LimitedArrivals(Arrivals):
    """A slot's arrival list that ends the request's deadline at its N-th response."""

    __slots__ = ("limit", "scope")

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.scope: asyncio.Timeout | None = None

    def append(self, at: int) -> None:
        super().append(at)
        if self.scope is not None and len(self) >= self.limit:
            self.scope.reschedule(asyncio.get_running_loop().time())  # fires at the next turn


class Canceller:
    """Which requests to cancel (``share_pct`` of them, spread evenly) and when: after
    ``after_s`` from the send, after ``after_responses`` responses, or whichever comes first."""

    def __init__(self, after_s: float | None, after_responses: int | None, share_pct: float) -> None:
        self.after_s, self.after_responses = after_s, after_responses
        self.share = share_pct / 100.0
        self._picked = 0.0

    def arrivals(self) -> Arrivals:
        """The list a slot reuses for its requests' arrivals."""
        return LimitedArrivals(self.after_responses) if self.after_responses else Arrivals()

    def _pick(self) -> bool:
        before = int(self._picked)
        self._picked += self.share
        return int(self._picked) > before

    async def send(self, send: StreamSender, request: Any, arrivals: Arrivals) -> str | None:
        """``send(request, arrivals)``, cancelled on its deadline if this request is picked:
        then :data:`CANCELLED` (a request that ended first is an ordinary answer)."""
        if not self._pick():
            return await send(request, arrivals)
        limited = arrivals if isinstance(arrivals, LimitedArrivals) else None
        try:
            async with asyncio.timeout(self.after_s) as scope:
                if limited is not None:
                    limited.scope = scope
                return await send(request, arrivals)
        except TimeoutError:
            return CANCELLED
        finally:
            if limited is not None:
                limited.scope = None


def stream_call(canceller: Canceller | None, send: StreamSender) -> StreamSender:
    """The slot's send: plain, or through ``canceller``."""
    if canceller is None:
        return send
    return lambda request, arrivals: canceller.send(send, request, arrivals)


def canceller_for(after_ms: int | None, after_responses: int | None, share_pct: float) -> Canceller | None:
    """The settings' canceller; None when nothing is cancelled."""
    if after_ms is None and after_responses is None:
        return None
    return Canceller(None if after_ms is None else after_ms / 1000.0, after_responses, share_pct)
