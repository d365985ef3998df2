"""What ``--ray`` costs the driver, and what it does to throughput on one machine (issue 19).

    .venv/bin/python benchmarks/ray_overhead.py
    .venv/bin/python benchmarks/ray_overhead.py --actors 1,2,4,8 --cuts 30 --repeats 2

Starts a two-node Ray cluster on loopback (Ray's ``cluster_utils.Cluster``, 4 CPUs a node) and
one embedded Triton, then:

1. **Driver cost per window**: a :class:`RayPool` of 1, 2, 4 and 8 actors keeps ``identity``
   at 4 requests in flight per actor; the driver cuts a window every 250 ms and times each cut
   (the actor calls, the windows' transfer, the exact merge): wall time and the driver's own
   CPU time per cut, median and 90th percentile, beside the same for local ``--workers``
   processes (pipes) where the count allows.
2. **Throughput**: ``identity`` at concurrency 64 and 256 in one process, with local
   ``--workers 2`` and with ``--ray --workers 2``, alternating (the order flips each repeat),
   median over repeats. On two shared cores no gain is expected: the point is the cost.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from loadgen.config import MeasurementSettings, SweepSettings
from loadgen.distributed.ray_pool import RayPool
from loadgen.engine.pooled import Pool, PooledLoad
from loadgen.engine.worker_engine import WorkerSetup
from loadgen.engine.workers import WorkerPool
from loadgen.inputs import build_requests
from loadgen.runner import execute_sweep
from loadgen.scrape.server_api import ServerAPI
from loadgen.server import EmbeddedServer
from loadgen.server.ports import ServerPorts
from loadgen.storage import RunStore

CUT_EVERY_S = 0.25
IN_FLIGHT_PER_WORKER = 4


async def _setup(server: EmbeddedServer) -> WorkerSetup:
    api = ServerAPI(server.grpc_url, "grpc")
    try:
        metadata = await api.model_metadata("identity", "")
        config = await api.model_config("identity", "")
    finally:
        await api.close()
    requests = build_requests(metadata, config, batch_size=1, input_data="random", seed=0, shapes={})
    return WorkerSetup(protocol="grpc", url=server.grpc_url, requests=tuple(requests))


async def cut_costs(pool: Pool, cuts: int) -> tuple[list[float], list[float]]:
    """Wall and driver CPU milliseconds of each of ``cuts`` window cuts under a steady load."""
    await pool.start()
    try:
        await pool.measure_clocks()
        load = PooledLoad.closed(pool, IN_FLIGHT_PER_WORKER * pool.count)
        load.start()
        await asyncio.sleep(0.5)
        await load.cut()
        wall, cpu = [], []
        for _ in range(cuts):
            await asyncio.sleep(CUT_EVERY_S)
            w0, c0 = time.perf_counter(), time.process_time()
            window = await load.cut()
            wall.append((time.perf_counter() - w0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
            assert window.requests > 0 and not window.errors, window.errors
        await load.stop()
        return wall, cpu
    finally:
        await pool.close()


def _q(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=10)[8] if q == 0.9 else statistics.median(values)


def sweep_throughput(server: EmbeddedServer, db: str, level: int, **given: Any) -> float:
    measure = MeasurementSettings(measurement_interval_ms=1500, warmup_ms=500, max_windows=3)
    settings = SweepSettings(
        model="identity", levels=(level,), url=server.grpc_url, metrics_url="", measurement=measure, **given
    )
    with RunStore(db) as store:
        outcome = asyncio.run(execute_sweep(settings, store))
        assert outcome.error is None, outcome.error
        (step,) = outcome.steps
        return step.throughput


def print_cut_costs(setup: WorkerSetup, address: str, actors: list[int], cuts: int) -> None:
    print("| workers | kind | cut wall median (ms) | cut wall p90 (ms) | driver CPU per cut, median (ms) |")
    print("|---:|---|---:|---:|---:|")
    for count in actors:
        kinds: list[tuple[str, Pool]] = [("ray actors", RayPool(count, setup, address))]
        if count >= 2:
            kinds.append(("local processes", WorkerPool(count, setup)))
        for kind, pool in kinds:
            wall, cpu = asyncio.run(cut_costs(pool, cuts))
            cells = f"{_q(wall, 0.5):.2f} | {_q(wall, 0.9):.2f} | {_q(cpu, 0.5):.2f}"
            print(f"| {count} | {kind} | {cells} |")


def print_throughput(server: EmbeddedServer, address: str, db: str, levels: list[int], repeats: int) -> None:
    modes: list[tuple[str, dict[str, Any]]] = [
        ("one process", {"workers": 1}),
        ("--workers 2", {"workers": 2}),
        ("--ray --workers 2", {"workers": 2, "ray": address}),
    ]
    found: dict[tuple[str, int], list[float]] = {}
    for repeat in range(repeats):
        order = modes if repeat % 2 == 0 else modes[::-1]
        for level in levels:
            for name, given in order:
                found.setdefault((name, level), []).append(sweep_throughput(server, db, level, **given))
    names = " | ".join(f"{name} (infer/s)" for name, _ in modes)
    print(f"| concurrency | {names} | --ray / one process |")
    print("|---:|" + "---:|" * (len(modes) + 1))
    for level in levels:
        medians = [statistics.median(found[(name, level)]) for name, _ in modes]
        cells = " | ".join(f"{m:,.0f}" for m in medians)
        print(f"| {level} | {cells} | {medians[2] / medians[0]:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--actors", default="1,2,4,8")
    parser.add_argument("--cuts", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--levels", default="64,256")
    args = parser.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    nodes = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 4, "node_ip_address": "127.0.0.2", "include_dashboard": False},
    )
    nodes.add_node(num_cpus=4, node_ip_address="127.0.0.2")
    nodes.wait_for_nodes()
    ray.init(address=nodes.address, namespace="loadgen", log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp, EmbeddedServer(ports=ServerPorts.free()) as server:
            setup = asyncio.run(_setup(server))
            print_cut_costs(setup, nodes.address, [int(a) for a in args.actors.split(",")], args.cuts)
            print()
            db = f"sqlite:///{Path(tmp) / 'runs.db'}"
            print_throughput(
                server, nodes.address, db, [int(v) for v in args.levels.split(",")], args.repeats
            )
    finally:
        ray.shutdown()
        nodes.shutdown()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
