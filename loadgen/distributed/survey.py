"""``loadgen workers --ray ADDRESS``: the nodes and CPUs a ``--ray`` sweep would use, and each
node's clock offset to this host, measured as a sweep measures it before each step."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from loadgen.distributed.connect import connect, disconnect, import_ray
from loadgen.engine.clocks import ClockOffset, measure_offset

PROBE_TIMEOUT_S = 20.0
"""A node whose probe does not answer a call this long is listed with no clock."""


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    address: str
    cpus: float
    free_cpus: float | None
    """None where Ray cannot say (through a ``ray://`` client)."""
    clock: ClockOffset | None
    """None: no probe could run there in time."""


class _Clock:
    """A probe actor that takes no CPU: it only reads its node's clock."""

    async def now(self) -> int:
        return time.time_ns()


async def survey(address: str) -> list[NodeInfo]:
    """Every live node of the cluster at ``address``, with its clock offset."""
    owned = connect(address)
    try:
        ray = import_ray()
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        free = _free_per_node(ray)
        probe = ray.remote(num_cpus=0)(_Clock)
        actors = [probe.options(scheduling_strategy=_on(node["NodeID"])).remote() for node in nodes]
        try:
            clocks = await asyncio.gather(*(_offset(actor) for actor in actors), return_exceptions=True)
        finally:
            for actor in actors:
                ray.kill(actor)
        return [
            NodeInfo(
                node_id=node["NodeID"],
                address=node.get("NodeManagerAddress", "?"),
                cpus=float(node.get("Resources", {}).get("CPU", 0)),
                free_cpus=free.get(node["NodeID"]),
                clock=clock if isinstance(clock, ClockOffset) else None,
            )
            for node, clock in zip(nodes, clocks, strict=True)
        ]
    finally:
        disconnect(owned)


async def _offset(actor: Any) -> ClockOffset:
    """The node's offset; TimeoutError when its probe does not answer (a node too busy or lost)."""

    async def now() -> int:
        remote: int = await asyncio.wait_for(actor.now.remote(), PROBE_TIMEOUT_S)
        return remote

    return await measure_offset(now)


def _on(node_id: str) -> Any:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id, soft=False)


def _free_per_node(ray: Any) -> dict[str, float]:
    """Free CPUs by node id (Ray's per-node view; empty where this Ray cannot say)."""
    try:
        from ray._private.state import state

        available = state.available_resources_per_node()  # type: ignore[no-untyped-call]
    except Exception:
        return {}
    return {node: float(resources.get("CPU", 0)) for node, resources in available.items()}
