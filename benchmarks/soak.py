"""Soak: a long open-loop run at a steady rate, for benchmarks/RESULTS.md (issue 14, part 4). Not a test.

Against its own embedded Triton (the ``identity`` model alone), one open loop sends at
``--rate`` requests/s for ``--minutes``; every ``--every`` seconds a window is cut and the
client's resident memory, open file descriptors and asyncio tasks are sampled. At the end
the books must balance exactly: every request sent was answered, failed, or was still in
flight when the load stopped (sent = done + errors + in flight), and nothing was refused.

    .venv/bin/python benchmarks/soak.py --minutes 30 --rate 300
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from loadgen.engine.open_loop import OpenLoop
from loadgen.engine.recorder import OpenWindow
from loadgen.engine.schedules import Schedule
from loadgen.histogram import LatencyHistogram
from loadgen.inputs import build_requests
from loadgen.scrape.server_api import ServerAPI
from loadgen.server import EmbeddedServer, ServerPorts
from loadgen.transports import make_transport

REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"


@dataclass
class Sample:
    minute: float
    rss_mib: float
    fds: int
    tasks: int
    sent: int
    done: int
    errors: int


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def soak(url: str, protocol: str, rate: float, minutes: float, every_s: float) -> None:
    api = ServerAPI(url, protocol)
    transport = make_transport(protocol, url)
    metadata, config = await api.model_metadata("identity"), await api.model_config("identity")
    requests = [
        transport.prepare(r)
        for r in build_requests(metadata, config, batch_size=1, input_data="random", seed=0)
    ]
    load = OpenLoop(transport, requests, Schedule(rate=rate))
    load.start()
    load.swap(OpenWindow())  # before the dispatcher's first turn: every send is counted
    sent = done = errors = refused = 0
    latency = LatencyHistogram()
    samples: list[Sample] = []
    started = time.monotonic()
    deadline = started + minutes * 60
    while time.monotonic() < deadline:
        await asyncio.sleep(min(every_s, max(0.0, deadline - time.monotonic())))
        window = await load.cut()
        sent, done, errors = sent + window.sent, done + window.requests, errors + sum(window.errors.values())
        refused += window.refused
        latency.merge(window.histogram)
        samples.append(
            Sample(
                (time.monotonic() - started) / 60,
                _rss_mib(),
                len(os.listdir("/proc/self/fd")),
                len(asyncio.all_tasks()),
                sent,
                done,
                errors,
            )
        )
        s = samples[-1]
        print(
            f"{s.minute:5.1f} min: rss {s.rss_mib:6.1f} MiB, fds {s.fds}, tasks {s.tasks}, "
            f"sent {s.sent:,}, done {s.done:,}, errors {s.errors:,}, in flight {load.in_flight}",
            flush=True,
        )
    last = load.swap(OpenWindow())  # no await between this and stop's count of in-flight requests
    in_flight = await load.stop()
    sent, done, errors = sent + last.sent, done + last.requests, errors + sum(last.errors.values())
    refused += last.refused
    await transport.close()
    await api.close()
    first, final = samples[0], samples[-1]
    books = "exact" if sent == done + errors + in_flight else "LOST"
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines = [
        f"rate {rate:g}/s for {minutes:g} min over {protocol}: sent {sent:,} = done {done:,} + errors "
        f"{errors:,} + in flight at stop {in_flight} -> {books}; refused {refused}",
        f"RSS {first.rss_mib:.1f} MiB at {first.minute:.1f} min, {final.rss_mib:.1f} MiB at "
        f"{final.minute:.1f} min (max {max(s.rss_mib for s in samples):.1f}; ru_maxrss {peak_rss:.1f} MiB)",
        f"fds {first.fds} -> {final.fds} (max {max(s.fds for s in samples)}); tasks {first.tasks} -> "
        f"{final.tasks} (max {max(s.tasks for s in samples)})",
        f"latency p50 {latency.percentile_us(50) / 1000:.2f} ms, "
        f"p99 {latency.percentile_us(99) / 1000:.2f} ms, max {latency.max_us / 1000:.1f} ms",
    ]
    print("\n" + "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        shutil.copytree(REPOSITORY / "identity", repo / "identity")
        server = EmbeddedServer(repo, ServerPorts.free(), log_file=Path(tmp) / "triton.log")
        server.start()
        try:
            url = server.grpc_url if args.protocol == "grpc" else server.http_url
            asyncio.run(soak(url, args.protocol, args.rate, args.minutes, args.every))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
