"""Inputs through system shared memory or in each request, on one embedded Triton (issue 17).

    .venv/bin/python benchmarks/shared_memory.py                     # resnet and large_input, C = 1, 4
    .venv/bin/python benchmarks/shared_memory.py --models resnet --levels 1,8 --repeats 3

For each model and concurrency, ``loadgen sweep`` runs twice, alternately (the order flips each
repeat): plain (inputs in every request) and ``--shared-memory system`` (inputs placed once in
a registered region). Reported: throughput, p50 and the client's CPU per request (user+sys of
the loadgen process from wait4, less its start-up, measured alone, over the requests it
completed: its stored windows' requests plus its warm-up's at the same rate), medians over
repeats, and the shared/plain ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from loadgen.server import EmbeddedServer
from loadgen.server.ports import ServerPorts
from loadgen.storage import RunStore

WINDOW_MS, WARMUP_MS, WINDOWS = 2000, 500, 3


@dataclass
class Run:
    throughput: float
    p50_ms: float
    cpu_us_per_request: float


def start_up_cpu_s(server: EmbeddedServer, db: Path) -> float:
    """loadgen's own start-up (imports, the server checks): a sweep of a model the server lacks,
    which fails right after them; subtracted from every run's CPU."""
    cmd = [sys.executable, "-m", "loadgen", "sweep", "-m", "no_such_model", "-u", server.grpc_url]
    proc = subprocess.Popen(
        [*cmd, "--db", f"sqlite:///{db}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, _, usage = os.wait4(proc.pid, 0)
    return float(usage.ru_utime + usage.ru_stime)


def sweep(server: EmbeddedServer, model: str, level: int, shared: bool, db: Path, start_up_s: float) -> Run:
    db.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "loadgen", "sweep", "-m", model, "-u", server.grpc_url]
    cmd += ["--concurrency", str(level), "-p", str(WINDOW_MS), "--warmup", str(WARMUP_MS)]
    cmd += ["-r", str(WINDOWS), "--no-metrics", "-q", "--workers", "1", "--db", f"sqlite:///{db}"]
    cmd += ["--shared-memory", "system"] if shared else []
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        sys.exit(f"loadgen failed ({status}): {proc.stderr.read() if proc.stderr else ''}")
    with RunStore(f"sqlite:///{db}") as store:
        (run,) = store.list_runs()
        (step,) = store.steps(run.id)
    requests = step.request_count + step.throughput * WARMUP_MS / 1000
    assert step.lat_p50_us is not None
    cpu_us = (usage.ru_utime + usage.ru_stime - start_up_s) * 1e6 / requests
    return Run(step.throughput, step.lat_p50_us / 1000, cpu_us)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet,large_input")
    ap.add_argument("--levels", default="1,4")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, EmbeddedServer(ports=ServerPorts.free()) as server:
        db = Path(tmp) / "runs.db"
        start_up_s = statistics.median(start_up_cpu_s(server, db) for _ in range(3))
        for model in args.models.split(","):
            for level in (int(x) for x in args.levels.split(",")):
                runs: dict[bool, list[Run]] = {False: [], True: []}
                for repeat in range(args.repeats):
                    for shared in (False, True) if repeat % 2 == 0 else (True, False):
                        runs[shared].append(sweep(server, model, level, shared, db, start_up_s))
                        print(
                            f"  {model} C={level} rep {repeat} shared={shared}: {runs[shared][-1]}",
                            flush=True,
                        )
                med = {
                    key: Run(
                        *(statistics.median(getattr(r, f) for r in value) for f in Run.__dataclass_fields__)
                    )
                    for key, value in runs.items()
                }
                plain, shared_run = med[False], med[True]
                rows.append(
                    f"| {model} | {level} | {plain.throughput:,.1f} | {shared_run.throughput:,.1f} | "
                    f"{shared_run.throughput / plain.throughput:.2f} | "
                    f"{plain.p50_ms:.2f} | {shared_run.p50_ms:.2f} | "
                    f"{plain.cpu_us_per_request:,.0f} | {shared_run.cpu_us_per_request:,.0f} | "
                    f"{shared_run.cpu_us_per_request / plain.cpu_us_per_request:.2f} |"
                )
    print(
        f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, gRPC, start-up {start_up_s:.2f} s CPU "
        f"subtracted, medians of {args.repeats} alternating repeats\n"
    )
    print(
        "| model | concurrency | plain infer/s | shared infer/s | throughput ratio | plain p50 (ms) | "
        "shared p50 (ms) | plain client CPU us/req | shared client CPU us/req | CPU ratio |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
