"""Open-loop pacing: how late loadgen's sender is, per pacing, against the null server (issue 22, part 2).

    python benchmarks/open_loop_pacing.py                          # HTTP, spin vs timerfd, 2k..32k req/s
    python benchmarks/open_loop_pacing.py --rates 1000,8000,24000 --pacings timerfd --protocols http,grpc

The null server is :mod:`null_server`'s nginx, pinned to the first CPU; loadgen runs pinned to the
second, one ``loadgen sweep --request-rate R --pacing P`` process per rate and pacing, the order
of the pacings flipping each round. Reported per pacing and rate (medians over rounds): the rate
actually sent, the send lag (sent - intended) p50/p99/max that the sender measures and stores
itself, whether the step stayed on schedule (loadgen's own verdict: sent >= 98% of what was due
and nothing refused), and the client's CPU in cores while it sent: its user+sys time from
``/proc`` sampled every 0.1 s, over the measured windows only (start-up and the end left out).
``--loops`` runs each pacing on asyncio's loop and on uvloop (``LOADGEN_EVENT_LOOP``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from null_server import MODEL, NullServer, null_server, tree_cpu_s  # noqa: E402


@dataclass(frozen=True)
class Paced:
    pacing: str
    protocol: str
    rate: float
    sent_rate: float
    lag_p50_us: float
    lag_p99_us: float
    lag_max_us: float
    on_schedule: bool
    errors: int
    cores: float
    """Client CPU seconds per wall second while it sent."""
    loop: str = "uvloop"


def steady_cores(samples: list[tuple[float, float]], end: float, measured_s: float) -> float:
    """CPU seconds per second over the measured windows: the span that ends 0.5 s before the
    process did (the step's end, storing, exiting) and is 80% of the windows long."""
    span = [(t, c) for t, c in samples if end - 0.5 - 0.8 * measured_s <= t <= end - 0.5]
    if len(span) < 2:
        return float("nan")
    (t0, c0), (t1, c1) = span[0], span[-1]
    return (c1 - c0) / (t1 - t0)


def run_paced(
    pacing: str,
    loop: str,
    protocol: str,
    rate: float,
    server: NullServer,
    args: argparse.Namespace,
    tmp: Path,
) -> Paced:
    from loadgen.storage import RunStore

    db = tmp / f"lg-{pacing}-{loop}-{protocol}-{rate:g}-{time.monotonic_ns()}.db"
    url = f"127.0.0.1:{server.http_port if protocol == 'http' else server.grpc_port}"
    window_ms = int(args.seconds * 1000 / 3)
    cmd = [sys.executable, "-m", "loadgen", "sweep", "-m", MODEL, "-u", url, "-i", protocol]
    cmd += ["--request-rate", f"{rate:g}", "--pacing", pacing, "-p", str(window_ms), "--warmup", "500"]
    cmd += ["-r", "3", "-s", "100", "--no-metrics", "-q", "--db", f"sqlite:///{db}"]
    samples: list[tuple[float, float]] = []
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            ["taskset", "-c", str(args.client_cpu), *cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LOADGEN_EVENT_LOOP": loop},
        )
        while proc.poll() is None:
            samples.append((time.monotonic(), tree_cpu_s(proc.pid)))
            time.sleep(0.1)
        end = time.monotonic()
        if proc.returncode != 0:
            out.seek(0)
            sys.exit(f"{' '.join(cmd)} failed:\n{out.read().decode(errors='replace')[-2000:]}")
    with RunStore(f"sqlite:///{db}") as store:
        (run,) = store.list_runs()
        (step,) = store.steps(run.id)
    lag = step.send_lag_histogram()
    if lag is None or step.sent_count is None:
        sys.exit(f"{' '.join(cmd)}: the step stored no send lag")
    return Paced(
        pacing,
        protocol,
        rate,
        step.sent_count / step.duration_s,
        lag.percentile_us(50),
        lag.percentile_us(99),
        lag.max_us,
        not step.behind_schedule,
        step.error_count,
        steady_cores(samples, end, step.duration_s),
        loop,
    )


def table(results: list[Paced]) -> str:
    lines = [
        "| protocol | loop | pacing | rate (req/s) | sent (req/s) | send lag p50 (us) | p99 (us) | max (us) "
        "| on schedule | errors | client cores while sending |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    keys = dict.fromkeys((r.protocol, r.loop, r.pacing, r.rate) for r in results)
    for key in sorted(keys):
        rows = [r for r in results if (r.protocol, r.loop, r.pacing, r.rate) == key]

        def med(field: str, rows: list[Paced] = rows) -> float:
            return float(statistics.median(getattr(r, field) for r in rows))

        on = sum(r.on_schedule for r in rows)
        protocol, loop, pacing, rate = key
        lines.append(
            f"| {protocol} | {loop} | {pacing} | {rate:,.0f} | {med('sent_rate'):,.0f} "
            f"| {med('lag_p50_us'):.0f} "
            f"| {med('lag_p99_us'):.0f} | {med('lag_max_us'):,.0f} | {on}/{len(rows)} "
            f"| {sum(r.errors for r in rows)} | {med('cores'):.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="1000,4000,8000,12000,16000,24000,32000", help="requests/s")
    parser.add_argument("--pacings", default="spin,timerfd", help="--pacing values compared")
    parser.add_argument(
        "--loops", default="uvloop", help="event loops: asyncio, uvloop or both (default uvloop)"
    )
    parser.add_argument("--protocols", default="http", help="http, grpc or both (default http)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, the order flipping each (default 2)")
    parser.add_argument("--seconds", type=float, default=4.5, help="measured seconds per run (default 4.5)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    args = parser.parse_args()
    rates = [float(v) for v in args.rates.split(",")]
    # this script samples /proc ten times a second (a scan of every process): kept off the
    # client's core, where each scan would hold up loadgen's sender for milliseconds
    os.sched_setaffinity(0, {args.server_cpu})
    variants = [(p, lp) for lp in args.loops.split(",") for p in args.pacings.split(",")]
    results: list[Paced] = []
    with (
        tempfile.TemporaryDirectory(prefix="loadgen-pacing-") as name,
        null_server(args.server_cpu, Path(name)) as server,
    ):
        for round_ in range(args.rounds):
            for protocol in args.protocols.split(","):
                for rate in rates:
                    for pacing, loop in variants if round_ % 2 == 0 else variants[::-1]:
                        r = run_paced(pacing, loop, protocol, rate, server, args, Path(name))
                        results.append(r)
                        print(
                            f"round {round_ + 1} {protocol} {loop} {pacing} {rate:g}/s: "
                            f"sent {r.sent_rate:,.0f}/s, "
                            f"lag p50/p99 {r.lag_p50_us:.0f}/{r.lag_p99_us:.0f} us, "
                            f"{'on schedule' if r.on_schedule else 'BEHIND'}, {r.cores:.2f} cores",
                            file=sys.stderr,
                        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    pinned = f"null server on CPU {args.server_cpu}, loadgen on CPU {args.client_cpu}"
    print(f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {stamp}; {pinned}")
    print(table(results), end="")


if __name__ == "__main__":
    main()
