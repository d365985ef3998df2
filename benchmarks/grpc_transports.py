"""loadgen's two gRPC transports side by side with perf_analyzer, on one embedded Triton server.

    python benchmarks/grpc_transports.py                       # identity, 1,8,64,256, 3 rounds
    python benchmarks/grpc_transports.py --rounds 5 --levels 1,8 --profile-dir /tmp/prof

Tools: ``aio`` (loadgen.transports.grpc: raw grpc.aio), ``h2`` (loadgen.transports.grpc_h2:
a minimal HTTP/2 client) and ``pa`` (perf_analyzer -i grpc, run as benchmarks/vs_perf_analyzer.py
runs it). Each loadgen measurement is a fresh process (``--worker``) that measures one closed-loop
step with loadgen's own machinery (ClosedLoop + measure_step: warm-up, windows until stable) with
the window, stability threshold and trial limit perf_analyzer gets. Every round runs every tool at
every level, the order of the tools rotating from round to round, so that the machine's noise
(other jobs share the 2 CPUs) hits all of them alike; ratios are taken within a round and the
table shows their medians.

CPU per request: the worker's own process CPU (all its threads) over its measured windows after
the first, divided by the requests those windows completed; perf_analyzer's is its process
tree's CPU (wait4) over its estimated request count (start-up included, small for C++).

``--profile-dir DIR`` also runs each loadgen transport once per ``--profile-levels`` under
py-spy (sampling only the step, idle time included) and prints where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

TOOLS = ("aio", "h2", "pa")
LABELS = {"aio": "grpc.aio", "h2": "grpc_h2", "pa": "perf_analyzer"}


# -- one loadgen measurement, in its own process ------------------------------------------------------


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    from loadgen.config import MeasurementSettings
    from loadgen.engine.closed_loop import ClosedLoop
    from loadgen.engine.recorder import Window
    from loadgen.engine.step import StepListener, measure_step
    from loadgen.inputs import build_requests
    from loadgen.results import WindowResult
    from loadgen.scrape.server_api import ServerAPI
    from loadgen.transports.grpc import GrpcTransport
    from loadgen.transports.grpc_h2 import GrpcH2Transport

    api = ServerAPI(args.url, "grpc")
    try:
        metadata = await api.model_metadata(args.model)
        config = await api.model_config(args.model)
    finally:
        await api.close()
    specs = build_requests(metadata, config, batch_size=1, input_data="random", seed=0)
    transport: Any = GrpcTransport(args.url) if args.worker == "aio" else GrpcH2Transport(args.url)
    requests = [transport.prepare(spec) for spec in specs]
    settings = MeasurementSettings(
        measurement_interval_ms=args.measurement_interval,
        warmup_ms=args.warmup,
        stability_percentage=args.stability_percentage,
        max_windows=args.max_trials,
    )

    class Cpu(StepListener):
        """Process CPU and completed requests at each window cut."""

        def __init__(self) -> None:
            self.marks: list[tuple[float, int]] = []
            self.profiler: subprocess.Popen[bytes] | None = None

        def step_started(self, index: int, level: float) -> None:
            if args.profile:
                cmd = [args.py_spy, "record", "--pid", str(os.getpid()), "--idle", "--threads", "-r", "250"]
                cmd += ["-d", str(args.profile_seconds), "-f", "raw", "-o", args.profile]
                self.profiler = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def window_done(self, index: int, number: int, result: WindowResult, window: Window) -> None:
            self.marks.append((time.process_time(), result.request_count))

    cpu = Cpu()
    load = ClosedLoop(transport, requests, args.concurrency)
    try:
        step = await measure_step(0, load, settings, batch_size=1, listener=cpu)
    finally:
        await transport.close()
    if cpu.profiler is not None:
        _, err = cpu.profiler.communicate(timeout=args.profile_seconds + 60)
        if cpu.profiler.returncode:
            print(f"py-spy failed: {err.decode(errors='replace')[-300:]}", file=sys.stderr)
    marks = cpu.marks
    cpu_per_req = None
    if len(marks) >= 2:
        requests_after_first = sum(n for _, n in marks[1:])
        if requests_after_first:
            cpu_per_req = (marks[-1][0] - marks[0][0]) / requests_after_first
    summary = step.latency_summary()
    return {
        "status": "ok" if step.stable else "unstable",
        "throughput": step.throughput,
        "p50_us": summary["p50"],
        "p99_us": summary["p99"],
        "errors": step.errors,
        "requests": step.request_count,
        "cpu_ms_per_req": None if cpu_per_req is None else 1000 * cpu_per_req,
    }


def worker_main(args: argparse.Namespace) -> None:
    print(json.dumps(asyncio.run(_measure(args))))


# -- the orchestration ---------------------------------------------------------------------------------


@dataclass
class Measurement:
    status: str
    throughput: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    cpu_ms_per_req: float | None = None
    errors: dict[str, int] = field(default_factory=dict)


def worker_cmd(
    tool: str, url: str, c: int, args: argparse.Namespace, profile: str | None = None
) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", tool, "--url", url]
    cmd += ["--model", args.model, "--concurrency", str(c)]
    cmd += ["--measurement-interval", str(args.measurement_interval), "--warmup", str(args.warmup)]
    cmd += ["--stability-percentage", str(args.stability_percentage), "--max-trials", str(args.max_trials)]
    if profile:
        cmd += ["--profile", profile, "--profile-seconds", str(args.profile_seconds), "--py-spy", args.py_spy]
    return cmd


def run_loadgen(
    tool: str, url: str, c: int, args: argparse.Namespace, profile: str | None = None
) -> Measurement:
    proc = subprocess.run(
        worker_cmd(tool, url, c, args, profile), capture_output=True, text=True, timeout=args.timeout_s
    )
    if proc.returncode != 0:
        print(f"    {tool} C={c} failed: {proc.stderr.strip()[-300:]}", file=sys.stderr)
        return Measurement(f"failed (rc {proc.returncode})")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    status = data["status"] if not data["errors"] else f"{data['status']}, errors"
    return Measurement(
        status, data["throughput"], data["p50_us"], data["p99_us"], data["cpu_ms_per_req"], data["errors"]
    )


def run_pa(pa: str, url: str, c: int, args: argparse.Namespace, tmp: Path) -> Measurement:
    import vs_perf_analyzer  # benchmarks/vs_perf_analyzer.py: the one place that knows how to run it

    r = vs_perf_analyzer.run_perf_analyzer(pa, url, "grpc", c, args, tmp)
    cpu = 1000 * r.cpu_s / r.requests if r.requests else None
    return Measurement(r.status, r.throughput, r.p50_us, r.p99_us, cpu)


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratios(a: list[Measurement], b: list[Measurement], key: str) -> list[float | None]:
    out: list[float | None] = []
    for x, y in zip(a, b, strict=True):
        vx, vy = getattr(x, key), getattr(y, key)
        out.append(vx / vy if vx is not None and vy else None)
    return out


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def spread(values: list[float | None]) -> str:
    present = sorted(v for v in values if v is not None)
    if not present:
        return "-"
    mid = statistics.median(present)
    return f"{mid:.2f} ({present[0]:.2f}-{present[-1]:.2f})" if len(present) > 1 else f"{mid:.2f}"


def table(cells: dict[int, dict[str, list[Measurement]]], tools: list[str]) -> str:
    pairs = [(a, b) for a, b in (("h2", "aio"), ("h2", "pa"), ("aio", "pa")) if a in tools and b in tools]
    head = ["C", *(f"{LABELS[t]} infer/s" for t in tools)]
    head += [f"{a}/{b} throughput" for a, b in pairs]
    head += [f"{a}/{b} p50" for a, b in pairs if b == "pa"] + [f"{a}/{b} p99" for a, b in pairs if b == "pa"]
    head += [f"{LABELS[t]} CPU ms/req" for t in tools]
    lines = ["| " + " | ".join(head) + " |", "|" + "--:|" * len(head)]
    for c, by_tool in cells.items():
        row = [str(c)]
        for t in tools:
            bad = sorted({m.status for m in by_tool[t] if m.status != "ok"})
            text = fmt(median([m.throughput for m in by_tool[t]]), ".0f")
            row.append(f"{text} ({', '.join(bad)})" if bad else text)
        row += [spread(ratios(by_tool[a], by_tool[b], "throughput")) for a, b in pairs]
        for key in ("p50_us", "p99_us"):
            row += [spread(ratios(by_tool[a], by_tool[b], key)) for a, b in pairs if b == "pa"]
        row += [fmt(median([m.cpu_ms_per_req for m in by_tool[t]]), ".3f") for t in tools]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# -- profiles ------------------------------------------------------------------------------------------


def _bucket(frame: str) -> str:
    if "grpc_h2.py" in frame or "transports/h2_" in frame:
        return "grpc_h2 transport"
    if "hpack" in frame:
        return "hpack"
    if "grpc/_cython" in frame or "grpc/aio" in frame or "cygrpc" in frame:
        return "grpc (Cython / C-core)"
    if "loadgen/engine" in frame or "histogram.py" in frame:
        return "loadgen engine + histogram"
    if "asyncio" in frame or "selectors.py" in frame:
        return "asyncio event loop"
    return "other"


def summarize_profile(path: Path, top: int = 12) -> str:
    """The event loop's thread (MainThread): the share of samples idle in the selector, busy samples
    by the module of their innermost frame, and the busiest innermost frames. Native work shows under
    the Python frame that called it (a socket write under ``_SelectorSocketTransport.write``); the
    C-core's own threads are not Python threads and are not sampled."""
    leaves: collections.Counter[str] = collections.Counter()
    buckets: collections.Counter[str] = collections.Counter()
    others: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        thread, *frames = stack.split(";")
        if not thread.endswith("MainThread"):
            others[frames[-1] if frames else thread] += count
            continue
        total += count
        leaf = frames[-1] if frames else "?"
        if "select (selectors.py" in leaf:  # EpollSelector.select: waiting for the server
            idle += count
            continue
        buckets[_bucket(leaf)] += count
        leaves[leaf] += count
    if not total:
        return f"{path.name}: no samples of the main thread"
    share = 100 / total
    lines = [
        f"{path.name}: event-loop thread {total} samples: idle in select {idle * share:.0f}%,"
        f" busy {(total - idle) * share:.0f}%"
    ]
    lines += [f"  {n * share:5.1f}%  {name}" for name, n in buckets.most_common()]
    lines.append("  busiest innermost frames:")
    lines += [f"  {n * share:5.1f}%  {name}" for name, n in leaves.most_common(top)]
    if others:
        lines.append(
            f"  other Python threads: {sum(others.values())} samples, mostly {others.most_common(1)[0][0]}"
        )
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="identity")
    ap.add_argument("--levels", default="1,8,64,256", help="comma-separated concurrency levels")
    ap.add_argument("--tools", default="aio,h2,pa", help="subset of aio,h2,pa")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--measurement-interval", type=int, default=2000, help="window length, ms (all tools)")
    ap.add_argument("--warmup", type=int, default=1000, help="loadgen warm-up, ms")
    ap.add_argument("--stability-percentage", type=float, default=10)
    ap.add_argument("--max-trials", type=int, default=10)
    ap.add_argument("--pa-max-threads", type=int, default=4, help="perf_analyzer --max-threads (capped at C)")
    ap.add_argument(
        "--perf-analyzer", help="perf_analyzer binary (default: ../shared/tools/get-perf-analyzer)"
    )
    ap.add_argument("--timeout-s", type=float, default=180)
    ap.add_argument("--max-rss-mb", type=float, default=4096)
    ap.add_argument("--profile-dir", type=Path, help="also profile each loadgen transport with py-spy")
    ap.add_argument("--profile-levels", default="1,64")
    ap.add_argument("--profile-seconds", type=int, default=6)
    ap.add_argument("--py-spy", default=str(Path(sys.executable).parent / "py-spy"))
    # worker mode (one loadgen measurement, JSON on stdout)
    ap.add_argument("--worker", choices=("aio", "h2"), help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--profile", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker_main(args)
        return

    from loadgen.server import EmbeddedServer, ServerPorts

    tools = [t for t in args.tools.split(",") if t]
    unknown = set(tools) - set(TOOLS)
    if unknown:
        sys.exit(f"unknown tools {sorted(unknown)}: choose from {','.join(TOOLS)}")
    levels = [int(x) for x in args.levels.split(",")]
    pa = None
    if "pa" in tools:
        import vs_perf_analyzer

        pa = vs_perf_analyzer.perf_analyzer_path(args.perf_analyzer)
    cells: dict[int, dict[str, list[Measurement]]] = {c: {t: [] for t in tools} for c in levels}
    load_before = os.getloadavg()
    started = time.time()
    with tempfile.TemporaryDirectory() as tmpdir, EmbeddedServer(ports=ServerPorts.free()) as server:
        url = server.grpc_url
        for rnd in range(args.rounds):
            order = tools[rnd % len(tools) :] + tools[: rnd % len(tools)]
            for c in levels:
                for tool in order:
                    if tool == "pa":
                        assert pa is not None
                        m = run_pa(pa, url, c, args, Path(tmpdir))
                    else:
                        m = run_loadgen(tool, url, c, args)
                    cells[c][tool].append(m)
                    print(
                        f"  round {rnd + 1} C={c} {LABELS[tool]}: {fmt(m.throughput, '.0f')} infer/s"
                        f" p50 {fmt(m.p50_us, '.0f')} us cpu {fmt(m.cpu_ms_per_req, '.3f')} ms/req {m.status}"
                        + (f" {m.errors}" if m.errors else ""),
                        file=sys.stderr,
                    )
        profiles: list[str] = []
        if args.profile_dir:
            args.profile_dir.mkdir(parents=True, exist_ok=True)
            for c in (int(x) for x in args.profile_levels.split(",")):
                for tool in ("aio", "h2"):
                    out = args.profile_dir / f"{tool}-c{c}.txt"
                    out.unlink(missing_ok=True)
                    run_loadgen(tool, url, c, args, profile=str(out))
                    profiles.append(summarize_profile(out) if out.exists() else f"{out.name}: no profile")
    command = shlex.join(["python", "benchmarks/grpc_transports.py", *sys.argv[1:]])
    print(
        f"\n`{command}`: {args.rounds} round(s), {time.time() - started:.0f} s, load average before"
        f" {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}, nproc {os.cpu_count()}\n"
    )
    print(table(cells, tools))
    print(
        "\nThroughput columns: medians over rounds. Ratios: median (min-max) of the per-round ratios."
        " CPU ms/req: loadgen = its process CPU over measured windows 2..N / their requests;"
        " perf_analyzer = its whole run (wait4) / estimated requests."
    )
    for text in profiles:
        print("\n" + text)


if __name__ == "__main__":
    main()
