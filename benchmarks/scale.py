"""Scale and overhead figures for benchmarks/RESULTS.md (issue 6, parts 3-5). Not a test.

Sub-commands, each against its own embedded Triton on free ports:

* ``concurrency`` - one closed-loop step at a very high concurrency (default 1024): errors?
* ``rates``       - an open-loop ladder: achieved send rate vs target, send lag p50/p99/max,
  up to where the client says it cannot keep up;
* ``rss``         - peak and sampled RSS of a ``loadgen sweep`` process over a long step
  (``--seconds 60`` and ``--seconds 600``): flat memory means latencies go into histograms;
* ``observe``     - throughput with and without ``/stats`` snapshots and metrics scraping,
  alternated in one process, to price the observation.

    .venv/bin/python benchmarks/scale.py concurrency --level 1024
    .venv/bin/python benchmarks/scale.py rates --rates 500,1000,2000,4000,8000
    .venv/bin/python benchmarks/scale.py rss --seconds 60
    .venv/bin/python benchmarks/scale.py observe --rounds 4
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loadgen.config import MeasurementSettings, SweepSettings
from loadgen.engine.closed_loop import ClosedLoop
from loadgen.engine.step import measure_step
from loadgen.inputs import build_requests
from loadgen.runner import execute_sweep
from loadgen.scrape.metrics import MetricsScraper
from loadgen.scrape.server_api import ServerAPI
from loadgen.server import EmbeddedServer, ServerPorts
from loadgen.storage import RunStore
from loadgen.transports import make_transport

LOADGEN = str(Path(sys.executable).with_name("loadgen"))


def _server(tmp: Path) -> EmbeddedServer:
    server = EmbeddedServer(ports=ServerPorts.free(), log_file=tmp / "triton.log", startup_timeout_s=120)
    server.start()
    return server


def cmd_concurrency(args: argparse.Namespace, server: EmbeddedServer, tmp: Path) -> None:
    settings = SweepSettings(
        model=args.model,
        levels=(float(args.level),),
        url=server.http_url if args.protocol == "http" else server.grpc_url,
        protocol=args.protocol,
        metrics_url=server.metrics_url,
        measurement=MeasurementSettings(measurement_interval_ms=args.interval, warmup_ms=2000, max_windows=6),
        workers=args.workers,
    )
    with RunStore(f"sqlite:///{tmp}/c.db") as store:
        outcome = asyncio.run(execute_sweep(settings, store))
        (step,) = store.steps(outcome.run_id)
    print(f"| {args.protocol} | {args.level} | {step.throughput:,.0f} | {step.request_count} | ", end="")
    windows = f"{step.window_count} x {args.interval} ms"
    print(f"{step.error_count} | {step.stable} | {windows} | {outcome.status} |")
    if step.errors:
        print(f"errors: {step.errors}")


def cmd_rates(args: argparse.Namespace, server: EmbeddedServer, tmp: Path) -> None:
    print("| protocol | target req/s | sent req/s | sent vs due | lag p50 (us) | lag p99 (us) |", end="")
    print(" lag max (us) | completed infer/s | refused | behind schedule |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|---|")
    for rate in (float(r) for r in args.rates.split(",")):
        settings = SweepSettings(
            model=args.model,
            levels=(rate,),
            url=server.http_url if args.protocol == "http" else server.grpc_url,
            protocol=args.protocol,
            scenario="request_rate",
            distribution=args.distribution,
            metrics_url="",
            measurement=MeasurementSettings(
                measurement_interval_ms=args.interval, warmup_ms=1000, max_windows=4
            ),
            workers=args.workers,
        )
        with RunStore(f"sqlite:///{tmp}/r{rate:g}.db") as store:
            outcome = asyncio.run(execute_sweep(settings, store))
            (step,) = store.steps(outcome.run_id)
        due = step.scheduled_count or 0
        print(
            f"| {args.protocol} | {rate:g} | {step.send_rate:,.1f} | "
            f"{(step.sent_count or 0) / due - 1 if due else float('nan'):+.2%} | "
            f"{step.send_lag_p50_us:,.0f} | {step.send_lag_p99_us:,.0f} | {step.send_lag_max_us:,.0f} | "
            f"{step.throughput:,.1f} | {step.refused_count} | {step.behind_schedule} |",
            flush=True,
        )


def _rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, kB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def cmd_rss(args: argparse.Namespace, server: EmbeddedServer, tmp: Path) -> None:
    # one step that never stabilises (-s 0.0001) runs exactly --max-trials windows
    windows = 10
    interval_ms = args.seconds * 1000 // windows
    url = server.http_url if args.protocol == "http" else server.grpc_url
    command = [
        LOADGEN, "sweep", "-m", args.model, "-i", args.protocol, "-u", url,
        "--metrics-url", server.metrics_url, "--concurrency", str(args.level),
        "-p", str(interval_ms), "--warmup", "0", "-s", "0.0001", "-r", str(windows),
        "-q", "--db", f"sqlite:///{tmp}/rss.db",
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    samples: list[tuple[float, int]] = []
    hwm = 0
    while proc.poll() is None:
        try:
            rss, hwm = _rss_kb(proc.pid)
        except (FileNotFoundError, ProcessLookupError, KeyError):
            break
        samples.append((time.monotonic() - started, rss))
        time.sleep(1.0)
    proc.wait()
    with RunStore(f"sqlite:///{tmp}/rss.db") as store:
        (run,) = store.list_runs()
        (step,) = store.steps(run.id)
        requests = sum(w.request_count for w in step.windows)
    wall = time.monotonic() - started
    tenth = max(1, len(samples) // 10)
    early = statistics.median(r for _, r in samples[tenth : 2 * tenth])  # after start-up
    late = statistics.median(r for _, r in samples[-tenth:])
    print(
        f"| {args.seconds} s | {args.protocol} | {args.level} | {requests:,} | {wall:.0f} s | "
        f"{hwm / 1024:.1f} MiB | {early / 1024:.1f} MiB | {late / 1024:.1f} MiB | {proc.returncode} |"
    )


async def _observe(args: argparse.Namespace, server: EmbeddedServer) -> None:
    url = server.grpc_url
    api = ServerAPI(url, "grpc")
    transport = make_transport("grpc", url)
    metadata = await api.model_metadata(args.model)
    config = await api.model_config(args.model)
    prepared = [
        transport.prepare(r)
        for r in build_requests(metadata, config, batch_size=1, input_data="random", seed=0)
    ]
    measurement = MeasurementSettings(measurement_interval_ms=args.interval, warmup_ms=1000, max_windows=3)

    async def stats():  # type: ignore[no-untyped-def]
        return await api.model_stats(args.model)

    results: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(args.rounds):
        for observed in (True, False) if round_ % 2 == 0 else (False, True):
            scraper = MetricsScraper(server.metrics_url, 1.0) if observed else None
            step = await measure_step(
                0,
                ClosedLoop(transport, prepared, args.level),
                measurement,
                batch_size=1,
                stats=stats if observed else None,
                scraper=scraper,
            )
            if scraper:
                await scraper.close()
            results[observed].append(step.throughput)
            print(f"round {round_}: observed={observed}: {step.throughput:,.1f} infer/s", flush=True)
    with_, without = statistics.median(results[True]), statistics.median(results[False])
    print(
        f"| {args.model} | grpc | {args.level} | {with_:,.1f} | {without:,.1f} | "
        f"{with_ / without - 1:+.2%} | {args.rounds} |"
    )
    await transport.close()
    await api.close()


def cmd_observe(args: argparse.Namespace, server: EmbeddedServer, tmp: Path) -> None:
    asyncio.run(_observe(args, server))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("concurrency", "rates", "rss", "observe"):
        p = sub.add_parser(name)
        p.add_argument("--model", default="identity")
        p.add_argument("-i", "--protocol", default="grpc", choices=("grpc", "http"))
        p.add_argument("--interval", type=int, default=3000, help="window length, ms")
        p.add_argument("--workers", type=int, default=None)
        p.add_argument("--level", type=int, default={"concurrency": 1024, "rss": 64}.get(name, 16))
        if name == "rates":
            p.add_argument("--rates", default="500,1000,2000,4000,8000")
            p.add_argument("--distribution", default="constant", choices=("constant", "poisson"))
        if name == "rss":
            p.add_argument("--seconds", type=int, default=60)
        if name == "observe":
            p.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = _server(Path(tmp))
        try:
            {"concurrency": cmd_concurrency, "rates": cmd_rates, "rss": cmd_rss, "observe": cmd_observe}[
                args.command
            ](args, server, Path(tmp))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
