"""Connections at scale: 10,000 gRPC requests in flight over a few HTTP/2 connections, and 4,096
HTTP/1.1 connections, held for a whole step (issue 22, part 3).

    python benchmarks/connections.py                                  # null server, then Triton
    python benchmarks/connections.py --grpc 10000 --max-connections 4,16 --http 4096 --targets null

One ``loadgen sweep --concurrency C`` per row, against

- ``null``: :mod:`null_server`'s nginx on the first CPU, loadgen on the second (the client's
  own limits: nothing the server does slows it down);
- ``triton``: the embedded Triton server with the ``identity`` model (what Triton does with that
  many requests and connections: whether it takes them all, and its own memory and descriptors).

While each runs, the script samples the client's (and Triton's) resident memory and open file
descriptors from ``/proc`` every 0.2 s. "Held" is the part of the run during which the client had
at least 95% of its peak descriptors open: the table gives its RSS when that began and the most it
reached afterwards (flat memory: the two agree), the peak descriptor count, the step's throughput,
latency and errors (every request counted: a refused connection or a reset stream is an error).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from null_server import MODEL, null_server  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Sample:
    at: float
    rss_mb: float
    fds: int


def sample(pid: int) -> Sample | None:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            rss = int(statm.read().split()[1]) * PAGE / 2**20
        return Sample(time.monotonic(), rss, len(os.listdir(f"/proc/{pid}/fd")))
    except (OSError, IndexError, ValueError):
        return None


@contextmanager
def sampling(pids: list[int | None], every_s: float = 0.2) -> Iterator[dict[int, list[Sample]]]:
    """Samples of each live pid in ``pids`` until the block ends."""
    samples: dict[int, list[Sample]] = {pid: [] for pid in pids if pid is not None}
    done = threading.Event()

    def run() -> None:
        while not done.wait(every_s):
            for pid, seen in samples.items():
                got = sample(pid)
                if got is not None:
                    seen.append(got)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        done.set()
        thread.join()


@dataclass(frozen=True)
class Held:
    """Memory and descriptors while the load was fully up."""

    rss_start_mb: float
    rss_max_mb: float
    fds: int
    held_s: float


def held(samples: list[Sample]) -> Held:
    if not samples:
        return Held(float("nan"), float("nan"), 0, 0.0)
    peak = max(s.fds for s in samples)
    up = [s for s in samples if s.fds >= 0.95 * peak]
    return Held(up[0].rss_mb, max(s.rss_mb for s in up), peak, up[-1].at - up[0].at)


@dataclass(frozen=True)
class Row:
    target: str
    protocol: str
    concurrency: int
    max_connections: int | None
    throughput: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: dict[str, int]
    unanswered: int
    """Slots that got no answer during a whole window (the server held fewer in flight)."""
    client: Held
    server: Held | None


def run_loadgen(
    target: str,
    url: str,
    protocol: str,
    concurrency: int,
    max_connections: int | None,
    server_pid: int | None,
    args: argparse.Namespace,
    tmp: Path,
) -> Row:
    from loadgen.storage import RunStore

    db = tmp / f"lg-{target}-{protocol}-{concurrency}-{max_connections}-{time.monotonic_ns()}.db"
    window_ms = int(args.seconds * 1000 / 3)
    cmd = [sys.executable, "-m", "loadgen", "sweep", "-m", MODEL, "-u", url, "-i", protocol]
    cmd += ["--concurrency", str(concurrency), "-p", str(window_ms), "--warmup", str(args.warmup_ms)]
    cmd += ["-r", "3", "-s", "100", "--workers", "1", "--no-metrics", "-q", "--db", f"sqlite:///{db}"]
    if max_connections is not None:
        cmd += ["--max-connections", str(max_connections)]
    pin = ["taskset", "-c", str(args.client_cpu)] if target == "null" else []
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([*pin, *cmd], stdout=out, stderr=subprocess.STDOUT)
        with sampling([proc.pid, server_pid]) as samples:
            code = proc.wait()
        out.seek(0)
        text = out.read().decode(errors="replace")
    if code != 0:
        sys.exit(f"{' '.join(cmd)} failed ({code}):\n{text[-2000:]}")
    with RunStore(f"sqlite:///{db}") as store:
        (run,) = store.list_runs()
        (step,) = store.steps(run.id)
    latency = step.histogram()
    return Row(
        target,
        protocol,
        concurrency,
        max_connections,
        step.throughput,
        latency.percentile_us(50) / 1000,
        latency.percentile_us(99) / 1000,
        step.request_count,
        dict(step.errors),
        step.unanswered_slots or 0,
        held(samples[proc.pid]),
        held(samples[server_pid]) if server_pid is not None else None,
    )


def table(rows: list[Row]) -> str:
    lines = [
        "| target | protocol | in flight | connections | req/s | p50 (ms) | p99 (ms) | requests | errors "
        "| unanswered slots "
        "| client fds | client RSS held: start -> max (MB) | held (s) | server fds | server RSS (MB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        connections = (
            r.concurrency
            if r.protocol == "http"
            else r.max_connections or f"{-(-r.concurrency // 64)} (default)"
        )
        errors = ", ".join(f"{k}: {v}" for k, v in r.errors.items()) or "0"
        server = (
            f"{r.server.fds} | {r.server.rss_start_mb:,.0f} -> {r.server.rss_max_mb:,.0f}"
            if r.server is not None
            else "- | -"
        )
        lines.append(
            f"| {r.target} | {r.protocol} | {r.concurrency:,} | {connections} | {r.throughput:,.0f} "
            f"| {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.requests:,} | {errors} | {r.unanswered:,} "
            f"| {r.client.fds:,} "
            f"| {r.client.rss_start_mb:,.0f} -> {r.client.rss_max_mb:,.0f} | {r.client.held_s:.1f} "
            f"| {server} |"
        )
    return "\n".join(lines) + "\n"


def cases(args: argparse.Namespace) -> list[tuple[str, int, int | None]]:
    grpc = [("grpc", args.grpc, int(m) if m != "default" else None) for m in args.max_connections.split(",")]
    return [*grpc, ("http", args.http, None)] if args.http else grpc


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grpc", type=int, default=10_000, help="gRPC requests in flight (default 10000)")
    parser.add_argument(
        "--max-connections", default="4,16", help="--max-connections values, or 'default' (default 4,16)"
    )
    parser.add_argument("--http", type=int, default=4096, help="HTTP/1.1 connections (default 4096; 0: none)")
    parser.add_argument("--targets", default="null,triton", help="null, triton or both (default both)")
    parser.add_argument("--seconds", type=float, default=9.0, help="measured seconds per run (default 9)")
    parser.add_argument("--warmup-ms", type=int, default=3000, help="loadgen --warmup (default 3000)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    args = parser.parse_args()
    rows: list[Row] = []
    targets = args.targets.split(",")
    with tempfile.TemporaryDirectory(prefix="loadgen-connections-") as name:
        tmp = Path(name)
        if "null" in targets:
            with null_server(args.server_cpu, tmp) as server:
                for protocol, concurrency, cap in cases(args):
                    port = server.http_port if protocol == "http" else server.grpc_port
                    rows.append(
                        run_loadgen("null", f"127.0.0.1:{port}", protocol, concurrency, cap, None, args, tmp)
                    )
                    print(table(rows[-1:]).splitlines()[-1], file=sys.stderr)
        if "triton" in targets:
            from loadgen.server import EmbeddedServer, ServerPorts

            with EmbeddedServer(ports=ServerPorts.free()) as triton:
                for protocol, concurrency, cap in cases(args):
                    url = triton.http_url if protocol == "http" else triton.grpc_url
                    rows.append(run_loadgen("triton", url, protocol, concurrency, cap, triton.pid, args, tmp))
                    print(table(rows[-1:]).splitlines()[-1], file=sys.stderr)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    print(f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {stamp}")
    print(table(rows), end="")


if __name__ == "__main__":
    main()
