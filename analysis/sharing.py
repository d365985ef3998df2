"""Whether a step had the model to itself: Triton's statistics are per model, so when another
client (a second loadgen sending another traffic class, a production caller) loads the same
model, the server's queue and compute times mix its requests with the run's own, and a latency
breakdown built from them would blame the wrong part."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

OTHER_SHARE = 0.10
"""The server may count this share more requests than the run got (and at least the step's
concurrency, and :data:`OTHER_SLACK`) before the step counts as shared: the windows' edges cut
requests in flight either way."""
OTHER_SLACK = 10

Row = Mapping[Hashable, Any]


def other_requests(row: Row) -> int | None:
    """Requests the server answered in the step beyond the run's own; None when it counted no more
    than the run sent (or has no statistics for the step)."""
    server, own = row.get("server_success_count"), row.get("request_count")
    if server is None or own is None or (isinstance(server, float) and math.isnan(server)):
        return None
    extra = int(server) - int(own)
    in_flight = int(row.get("concurrency") or 0)
    return extra if extra > max(OTHER_SHARE * int(own), OTHER_SLACK, in_flight) else None


def shared_text(rows: Sequence[tuple[str, Row]]) -> str:
    """The finding for the shared steps (each with its load level as said)."""
    level, row = rows[0]
    said = f"{level}: the server answered {int(row['server_success_count'])} requests of this model"
    said += f" while this run got {int(row['request_count'])}"
    if len(rows) > 1:
        said += f" (and {len(rows) - 1} more step(s) like it)"
    return (
        f"{said}: another client loads the model too, so Triton's queue and compute times mix its "
        "requests with this run's; no latency breakdown for these steps"
    )
