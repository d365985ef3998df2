"""A candidate as a config override, and whether the served config is that candidate.

Triton's load-with-config replaces the whole config, so every override starts from the config
served when the tune began (never from the last candidate: each candidate is the same edit of
the same original, whatever the order tried). What Triton fills in for itself is kept except
where it would contradict the candidate: a preferred batch size above the new max batch size.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from loadgen.errors import ConfigError
from loadgen.tune.space import Candidate

Config = dict[str, Any]


def _int(value: Any) -> int:
    """gRPC's JSON writes int64 as strings."""
    return int(value)


def served_candidate(config: Mapping[str, Any]) -> Candidate:
    """The point the served config is at; several instance groups count as their sum."""
    groups = config.get("instance_group") or [{"count": 1}]
    batching = config.get("dynamic_batching")
    delay = None if batching is None else _int(batching.get("max_queue_delay_microseconds", 0))
    return Candidate(
        sum(_int(g.get("count", 1)) for g in groups), _int(config.get("max_batch_size", 0)), delay
    )


def override(original: Mapping[str, Any], candidate: Candidate) -> Config:
    config: Config = copy.deepcopy(dict(original))
    groups = config.get("instance_group") or [{"kind": "KIND_CPU"}]
    if len(groups) > 1:
        raise ConfigError(
            f"{config.get('name')!r} has {len(groups)} instance groups: a tune varies one group's count"
        )
    config["instance_group"] = [{**groups[0], "count": candidate.instances}]
    config["max_batch_size"] = candidate.max_batch_size
    if candidate.queue_delay_us is None:
        config.pop("dynamic_batching", None)
    else:
        batching = dict(config.get("dynamic_batching") or {})
        batching["max_queue_delay_microseconds"] = candidate.queue_delay_us
        preferred = [
            s for s in batching.get("preferred_batch_size", []) if _int(s) <= candidate.max_batch_size
        ]
        if preferred:
            batching["preferred_batch_size"] = preferred
        else:
            batching.pop("preferred_batch_size", None)
        config["dynamic_batching"] = batching
    return config


def mismatch(served: Mapping[str, Any], candidate: Candidate) -> str | None:
    """What differs between the served config and the candidate; None: it is served."""
    found = served_candidate(served)
    if found == candidate:
        return None
    return f"Triton serves {found.key} instead of {candidate.key}"
