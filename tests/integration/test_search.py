"""SLO search against the real server, on a model whose capacity is known."""

from __future__ import annotations

from pathlib import Path

from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore
from tests.cli import loadgen_here

QUICK = ["-p", "500", "--warmup", "150", "-r", "3", "--no-metrics", "-q"]


def test_search_finds_the_known_capacity_of_fixed_latency(triton: EmbeddedServer, tmp_path: Path) -> None:
    # closed loop on a single-server queue: latency = C x 10.1 ms, so p99 <= 55 ms holds up to C = 5
    db = f"sqlite:///{tmp_path}/r.db"
    result = loadgen_here(
        "sweep",
        "-m",
        "fixed_latency",
        "-u",
        triton.grpc_url,
        "--concurrency",
        "1..16",
        "--latency-limit",
        "p99=55ms",
        "--search",
        *QUICK,
        "--db",
        db,
    )
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("SLO p99 <= 55 ms"))
    best = int(line.split("highest concurrency meeting it: ")[1].split()[0])
    assert best in (4, 5)  # the theory's 5, or one step below when a p99 spike hits C = 5
    with RunStore(db) as store:
        (run,) = store.list_runs()
        levels = [s.concurrency for s in store.steps(run.id)]
        assert levels[:4] == [1, 2, 4, 8]  # bracketing, then bisection between 4 and 8
        assert set(levels[4:]) <= {5, 6, 7} and len(levels) <= 6  # every probe is a stored step
        assert run.settings["latency_limit"] == {"percentile": 99.0, "limit_us": 55_000.0}


def test_search_says_when_even_the_lowest_load_misses(triton: EmbeddedServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    result = loadgen_here(
        "sweep",
        "-m",
        "fixed_latency",
        "-u",
        triton.grpc_url,
        "--concurrency",
        "2..8",
        "--latency-limit",
        "p99=5ms",
        "--search",
        *QUICK,
        "--db",
        db,
    )
    assert result.returncode == 0, result.stderr
    assert "even the lowest load (concurrency 2) misses it" in result.stdout


def test_latency_limit_alone_stops_the_sweep_after_the_first_miss(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    result = loadgen_here(
        "sweep",
        "-m",
        "fixed_latency",
        "-u",
        triton.grpc_url,
        "--concurrency",
        "1..16",
        "--latency-limit",
        "p99=35ms",  # 2 x 10 ms leaves room for a noisy machine; 4 x 10 ms cannot meet it
        *QUICK,
        "--db",
        db,
    )
    assert result.returncode == 0, result.stderr
    with RunStore(db) as store:
        (run,) = store.list_runs()
        assert [s.concurrency for s in store.steps(run.id)] == [1, 2, 4]  # 4 x 10 ms misses; 8, 16 not run
