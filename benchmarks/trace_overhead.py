"""What Triton's tracing costs at one request in 1, 10 and 100 (issue 18).

    .venv/bin/python benchmarks/trace_overhead.py                    # identity and resnet
    .venv/bin/python benchmarks/trace_overhead.py --models identity --rates 1,100 --repeats 3

For each model and rate, ``loadgen sweep`` runs alternately (the order flips each repeat) without
tracing and with ``--trace-rate N``, both over gRPC with grpc.aio (the client ``--trace-rate``
uses) on one embedded Triton, at a concurrency that keeps the server busy. Reported: median
throughput over repeats of each, their ratio, and the in-run figure loadgen stores with every
traced step (the throughput of one more window of the same load with tracing off, right after
the step's windows), as a second estimate from the same run. Also the traces joined per second,
and how many sweeps Triton 2.51 crashed under (SIGSEGV under heavy tracing; restarted, left out).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from loadgen.server import EmbeddedServer
from loadgen.server.ports import ServerPorts
from loadgen.storage import RunStore

WINDOW_MS, WARMUP_MS, WINDOWS = 2000, 500, 3
LEVELS = {"identity": 8, "resnet": 4}


@dataclass
class Run:
    throughput: float
    untraced_window: float | None
    joined_per_s: float


def sweep(server: EmbeddedServer, model: str, level: int, rate: int, db: Path) -> Run | None:
    """One sweep's step; None when Triton crashed under it (then restarted for the next)."""
    db.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "loadgen",
        "sweep",
        "-m",
        model,
        "-u",
        server.grpc_url,
        "--grpc-client",
        "aio",
    ]
    cmd += ["--concurrency", str(level), "-p", str(WINDOW_MS), "--warmup", str(WARMUP_MS), "-r", str(WINDOWS)]
    cmd += ["--stability-percentage", "100", "--no-metrics", "-q", "--db", f"sqlite:///{db}"]
    cmd += ["--trace-rate", str(rate)] if rate else []
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0 and not server.running:
        server.stop()
        server.start()
        return None
    if result.returncode != 0:
        sys.exit(f"loadgen failed ({result.returncode}): {result.stderr}")
    with RunStore(f"sqlite:///{db}") as store:
        (run,) = store.list_runs()
        (step,) = store.steps(run.id)
        traces = store.trace_samples(run.id).get(step.id, [])
    joined = sum(1 for t in traces if t.parent_id is None)
    return Run(step.throughput, step.untraced_throughput, joined / step.duration_s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="identity,resnet")
    ap.add_argument("--rates", default="1,10,100")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    columns = ["model", "C", "rate", "untraced infer/s", "traced infer/s", "traced / untraced"]
    print("| " + " | ".join([*columns, "in-run window ratio", "traces joined/s", "Triton crashed"]) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp, EmbeddedServer(ports=ServerPorts.free()) as server:
        db = Path(tmp) / "runs.db"
        for model in args.models.split(","):
            level = LEVELS.get(model, 4)
            for rate in (int(r) for r in args.rates.split(",")):
                plain: list[Run] = []
                traced: list[Run] = []
                crashed = 0
                for repeat in range(args.repeats):
                    for with_trace in (repeat % 2 == 1, repeat % 2 == 0):
                        run = sweep(server, model, level, rate if with_trace else 0, db)
                        if run is None:
                            crashed += 1
                        else:
                            (traced if with_trace else plain).append(run)
                if not traced or not plain:
                    print(
                        f"| {model} | {level} | {rate} | Triton crashed in {crashed} of {2 * args.repeats} |"
                    )
                    continue
                base = statistics.median(r.throughput for r in plain)
                on = statistics.median(r.throughput for r in traced)
                window = statistics.median(
                    r.throughput / r.untraced_window for r in traced if r.untraced_window
                )
                joined = statistics.median(r.joined_per_s for r in traced)
                cells = [model, level, rate, f"{base:,.1f}", f"{on:,.1f}", f"{on / base:.3f}"]
                said = [f"{window:.3f}", f"{joined:,.1f}", f"{crashed} of {2 * args.repeats}"]
                print("| " + " | ".join(map(str, [*cells, *said])) + " |", flush=True)


if __name__ == "__main__":
    main()
