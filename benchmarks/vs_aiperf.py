"""loadgen against NVIDIA's AIPerf, side by side on one embedded Triton server (issue 22).

    .venv/bin/python benchmarks/vs_aiperf.py     # identity C=1,8,64 + fixed_latency C=1, 4 repeats, ~15 min
    .venv/bin/python benchmarks/vs_aiperf.py --levels 1 --repeats 1 --seconds 2      # a smoke run
    .venv/bin/python benchmarks/vs_aiperf.py --output benchmarks/RESULTS.md

AIPerf (``pip install aiperf``, the successor of GenAI-Perf) is NVIDIA's current benchmarking tool.
Its released version 0.13.0 has no KServe endpoint type and only an HTTP transport (aiohttp), so
it reaches Triton through its ``template`` endpoint, which POSTs a JSON body rendered from a Jinja
template: here a fixed KServe v2 request to ``/v2/models/<model>/infer``. Its answer's
``outputs[0].name`` is read as the response "text" (``--extra-inputs response_field:...``): without
a response field AIPerf finds no text, embedding or ranking in a KServe answer and records every
request as an error ("No responses with actual content were received from the server").

One embedded Triton serves ``identity`` (a Python-backend FP32[16] pass-through, so the client is
the bottleneck) and ``fixed_latency`` (a single-server queue whose completions are paced
SERVICE_TIME_MS + PACING_SLACK_US apart: closed-loop theory is 1 / (10 ms + 100 us) = 99.0
infer/s at any C >= 1, read from its config). Three tools take turns, one run at a time, and the
order reverses each repeat, so the noise of a shared machine hits all of them:

* ``aiperf``: AIPerf over HTTP (``--concurrency C``), ``--benchmark-duration`` = 3 windows (what a
  stable loadgen step measures) after a ``--warmup-duration`` of loadgen's warm-up;
* ``lg-http``: ``loadgen sweep -i http``, the same endpoint;
* ``lg-grpc``: ``loadgen sweep -i grpc``, shown as an extra row. AIPerf 0.13.0 cannot drive
  Triton's gRPC (KServe) API, so this row has no AIPerf counterpart; its ratios are still taken
  against AIPerf over HTTP.

Both tools send the same bytes: one sample of loadgen's seeded random data, written as a
perf_analyzer JSON file for loadgen (``vs_perf_analyzer.shared_input``) and as the literal JSON
body of AIPerf's template. Streaming (a decoupled model over HTTP server-sent events, the one
streaming path AIPerf 0.13.0 can drive) is measured by ``benchmarks/streaming.py``; its table in
benchmarks/RESULTS.md is the streaming half of this comparison and is not rerun here.

Reported per model, C and tool (medians over repeats): throughput (requests completed per
second: AIPerf's request_throughput, loadgen's stable step), p50/p99 latency (AIPerf's
request_latency), requests in flight by Little's law (throughput x mean latency: how much of C a
tool really keeps at the server), and client CPU per request: user+sys of the tool's whole
process tree over its whole run (wait4: start-up, warm-up and shut-down included) divided by the
requests Triton completed for the model during that run (its /stats, so warm-up requests count
for both tools). Ratios are loadgen / AIPerf, the median (min-max) of the per-repeat ratios.
On fixed_latency, fidelity = measured throughput / theory. Compare its throughput, not its
latency: the model absorbs a client's turnaround shorter than S/2 into its pacing (a request
arriving g ms after the previous answer completes S + slack - g later), so a client that leaves
the instance idle between requests sees a p50 *below* the 10 ms service time and a lower rate.

AIPerf needs a tokenizer even for this; ``--tokenizer builtin`` downloads a file at start-up and
fails offline, so ``streaming.make_tokenizer`` writes a tiny local one (token counts unused).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import streaming  # noqa: E402 - benchmarks/streaming.py: aiperf_path, aiperf_version, make_tokenizer, aiperf_error
import vs_perf_analyzer  # noqa: E402 - benchmarks/vs_perf_analyzer.py: run_child, run_loadgen, shared_input, ...
from streaming import fmt, ratios  # noqa: E402

from loadgen.server import EmbeddedServer, ServerPorts  # noqa: E402
from loadgen.storage import RunStore  # noqa: E402

MODELS = ("identity", "fixed_latency")
TOOLS = ("aiperf", "lg-http", "lg-grpc")
LABELS = {"aiperf": "AIPerf", "lg-http": "loadgen", "lg-grpc": "loadgen"}
PROTOCOL = {"aiperf": "http", "lg-http": "http", "lg-grpc": "grpc"}
DTYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16}
RESPONSE_FIELD = "outputs[0].name"
"""What AIPerf's template endpoint reads as the response's text (a KServe answer has none)."""


@dataclass
class Run(vs_perf_analyzer.Result):
    """One tool run; ``requests`` are those Triton completed for the model during it."""

    avg_us: float | None = None  # mean request latency
    detail: str = ""

    @property
    def in_flight(self) -> float | None:
        """Requests in flight on average, by Little's law: throughput x mean latency."""
        if self.throughput is None or self.avg_us is None:
            return None
        return self.throughput * self.avg_us / 1e6


# -- the server and the inputs ---------------------------------------------------------------------------


def model_repository(tmp: Path, models: list[str]) -> Path:
    repo = tmp / "repository"
    for model in models:
        shutil.copytree(
            ROOT / "model_repository" / model, repo / model, ignore=shutil.ignore_patterns("__pycache__")
        )
    return repo


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - our own server
        return json.load(resp)


def theory(server: EmbeddedServer, model: str) -> float | None:
    """fixed_latency's closed-loop throughput (infer/s) at any C >= 1: completions are paced
    SERVICE_TIME_MS + PACING_SLACK_US apart while requests wait (model_repository/fixed_latency)."""
    params = get_json(f"{server.http_url}/v2/models/{model}/config").get("parameters", {})
    if "SERVICE_TIME_MS" not in params:
        return None
    period_ms = float(params["SERVICE_TIME_MS"]["string_value"])
    period_ms += float(params.get("PACING_SLACK_US", {}).get("string_value", "100")) / 1000
    return 1000 / period_ms


def kserve_body(server: EmbeddedServer, model: str, shared: Path) -> dict[str, Any]:
    """The KServe v2 JSON request carrying the same data as loadgen's --input-data file (batch 1)."""
    metadata = get_json(f"{server.http_url}/v2/models/{model}")
    entry = json.loads(shared.read_text())["data"][0]
    inputs = []
    for spec in metadata["inputs"]:
        raw = base64.b64decode(entry[spec["name"]]["b64"])
        data = np.frombuffer(raw, dtype=DTYPES[spec["datatype"]]).tolist()
        shape = [1 if int(d) < 0 else int(d) for d in spec["shape"]]
        inputs.append({"name": spec["name"], "datatype": spec["datatype"], "shape": shape, "data": data})
    return {"inputs": inputs}


def write_aiperf_inputs(tmp: Path, model: str, body: dict[str, Any]) -> dict[str, Path]:
    """AIPerf's body template (the fixed body, in a raw block so Jinja leaves it alone) and a
    one-line dataset (the template uses none of it)."""
    template, dataset = tmp / f"{model}-template.json", tmp / f"{model}-dataset.jsonl"
    template.write_text("{% raw %}" + json.dumps(body) + "{% endraw %}")
    dataset.write_text(json.dumps({"text": "x"}) + "\n")
    return {"template": template, "dataset": dataset}


# -- the tools -------------------------------------------------------------------------------------------


def run_aiperf(aiperf: str, url: str, model: str, c: int, args: argparse.Namespace, tmp: Path) -> Run:
    out = tmp / f"aiperf-{model}-{c}"
    shutil.rmtree(out, ignore_errors=True)
    files = args.aiperf_inputs[model]
    cmd = [aiperf, "profile", "-m", model, "--tokenizer", str(args.tokenizer), "--url", url]
    cmd += ["--endpoint", f"/v2/models/{model}/infer", "--endpoint-type", "template"]
    cmd += ["--extra-inputs", f"payload_template:{files['template']}"]
    cmd += ["--extra-inputs", f"response_field:{RESPONSE_FIELD}"]
    cmd += ["--input-file", str(files["dataset"]), "--custom-dataset-type", "single_turn"]
    cmd += ["--concurrency", str(c), "--benchmark-duration", f"{3 * args.seconds:g}"]
    cmd += ["--warmup-duration", f"{args.warmup / 1000:g}", "--ui", "none", "--random-seed", "0"]
    cmd += ["--artifact-dir", str(out), *shlex.split(args.extra_aiperf_args)]
    run = streaming.aiperf_run(cmd, out, args)
    if run.child.rc is None:
        return Run(run.why, cpu_s=run.child.cpu_s)
    if run.data is None:
        return Run(f"failed (rc {run.child.rc})", cpu_s=run.child.cpu_s, detail=run.why)
    return Run(
        "errors" if run.errors else "ok",
        run.stat("request_throughput", "avg"),
        run.stat("request_latency", "p50", 1000),
        run.stat("request_latency", "p99", 1000),
        run.child.cpu_s,
        avg_us=run.stat("request_latency", "avg", 1000),
        detail=f"{run.errors:.0f} errors" if run.errors else "",
    )


def loadgen_args(args: argparse.Namespace, model: str, shared: Path) -> argparse.Namespace:
    """What vs_perf_analyzer.run_loadgen reads."""
    return argparse.Namespace(
        model=model,
        measurement_interval=round(args.seconds * 1000),
        stability_percentage=args.stability_percentage,
        max_trials=args.max_trials,
        input_data="shared",
        input_data_arg=str(shared),
        extra_loadgen_args=f"--warmup {args.warmup} {args.extra_loadgen_args}",
        loadgen_warmup_ms=args.warmup,
        timeout_s=args.timeout_s,
        max_rss_mb=args.max_rss_mb,
    )


def run_loadgen(url: str, proto: str, c: int, lg_args: argparse.Namespace, tmp: Path) -> Run:
    result = vs_perf_analyzer.run_loadgen(url, proto, c, lg_args, tmp)
    run = Run(**asdict(result))
    db = tmp / f"lg-{proto}-{c}.db"  # where run_loadgen stored the step
    if result.throughput is not None and db.exists():
        with RunStore(f"sqlite:///{db}") as store:
            run.avg_us = store.steps(store.list_runs(limit=1)[0].id)[0].lat_avg_us
    return run


def counted(server: EmbeddedServer, model: str, run: Callable[[], Run]) -> Run:
    """Run a tool; its requests: those Triton completed for the model meanwhile (warm-up included)."""
    cost = vs_perf_analyzer.ServerCost(server, model)
    done0 = cost.read()[1]
    result = run()
    result.requests = cost.read()[1] - done0
    return result


# -- the table -------------------------------------------------------------------------------------------


def value(runs: list[Run], key: str, spec: str, scale: float = 1.0) -> str:
    mid = streaming.median([getattr(r, key) for r in runs])
    text = sig3(mid) if spec == "sig3" and mid is not None else fmt(mid, spec, scale)
    bad = sorted({r.status for r in runs if r.status != "ok"})
    return f"{text} ({', '.join(bad)})" if bad else text


def sig3(value: float) -> str:
    """Three significant digits, trailing zeros kept: 0.0181, 1.40, 14.9, 130 (and 2701)."""
    return f"{value:.0f}" if abs(value) >= 999.5 else format(value, "#.3g").rstrip(".")


def spread(values: list[float | None], show: Callable[[float], str] = sig3) -> str:
    """Median (min-max) of per-repeat values."""
    present = sorted(v for v in values if v is not None)
    if not present:
        return "-"
    mid = show(statistics.median(present))
    return f"{mid} ({show(present[0])}-{show(present[-1])})" if len(present) > 1 else mid


HEAD = [
    "model",
    "C",
    "tool",
    "protocol",
    "infer/s",
    "p50 ms",
    "p99 ms",
    "in flight",
    "client CPU ms/req",
    "throughput ratio loadgen/AIPerf",
    "CPU/req ratio loadgen/AIPerf",
    "fidelity (infer/s / theory)",
]


def table(cells: dict[tuple[str, int], dict[str, list[Run]]], theories: dict[str, float | None]) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|---|--:|---|---|" + "--:|" * (len(HEAD) - 4)]
    for (model, c), by_tool in cells.items():
        reference = by_tool.get("aiperf")
        for tool, runs in by_tool.items():
            row = [model, str(c), LABELS[tool], PROTOCOL[tool]]
            row += [value(runs, "throughput", ".1f"), value(runs, "p50_us", ".2f", 1e-3)]
            row += [value(runs, "p99_us", ".2f", 1e-3), value(runs, "in_flight", ".2f")]
            row.append(value(runs, "cpu_per_1k", "sig3"))
            if tool == "aiperf" or reference is None:
                row += ["-", "-"]
            else:
                row += [spread(ratios(runs, reference, key)) for key in ("throughput", "cpu_per_1k")]
            best = theories.get(model)
            if best is None:
                row.append("-")
            else:
                fidelity = [None if r.throughput is None else r.throughput / best for r in runs]
                row.append(f"{spread(fidelity, lambda v: f'{v:.3f}')} of {best:.1f}")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------------------


def progress(r: Run) -> str:
    return (
        f"{fmt(r.throughput, '.1f')} infer/s, p50 / p99 {fmt(r.p50_us, '.2f', 1e-3)} /"
        f" {fmt(r.p99_us, '.2f', 1e-3)} ms, in flight {fmt(r.in_flight, '.2f')}, CPU {r.cpu_s:.1f} s"
        f" / {r.requests:.0f} requests, {r.status} {r.detail}"
    ).rstrip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help=f"subset of {','.join(MODELS)}")
    ap.add_argument("--levels", default="1,8,64", help="identity's concurrency levels (comma-separated)")
    ap.add_argument("--fixed-latency-levels", default="1", help="fixed_latency's concurrency levels")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"subset of {','.join(TOOLS)}")
    ap.add_argument("--repeats", type=int, default=4, help="alternating rounds (the order reverses each)")
    ap.add_argument(
        "--seconds", type=float, default=3, help="window, s: loadgen -p; AIPerf --benchmark-duration 3x it"
    )
    ap.add_argument(
        "--warmup", type=int, default=1000, help="loadgen --warmup and AIPerf --warmup-duration, ms"
    )
    ap.add_argument("--stability-percentage", type=float, default=10, help="loadgen -s")
    ap.add_argument("--max-trials", type=int, default=6, help="loadgen -r: windows per step at most")
    ap.add_argument(
        "--aiperf",
        help=f"aiperf executable of its own venv (default: {streaming.DEFAULT_AIPERF}, else PATH)",
    )
    ap.add_argument(
        "--extra-aiperf-args", default="", help='passed to aiperf profile, e.g. "--workers-max 2"'
    )
    ap.add_argument("--extra-loadgen-args", default="", help='passed to loadgen sweep, e.g. "--workers 2"')
    ap.add_argument("--timeout-s", type=float, default=180, help="hard limit per tool run (s)")
    ap.add_argument(
        "--max-rss-mb", type=float, default=4096, help="kill a tool run whose RSS grows past this"
    )
    ap.add_argument("--output", type=Path, help="append the table (with command and machine) to this file")
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m]
    tools = [t for t in args.tools.split(",") if t]
    for given, known in ((models, MODELS), (tools, TOOLS)):
        unknown = set(given) - set(known)
        if unknown:
            sys.exit(f"unknown {sorted(unknown)}: choose from {','.join(known)}")
    levels = {
        "identity": [int(x) for x in args.levels.split(",")],
        "fixed_latency": [int(x) for x in args.fixed_latency_levels.split(",")],
    }
    notes = [
        "AIPerf 0.13.0 has no KServe endpoint type and no gRPC transport: it cannot drive Triton's gRPC"
        " API, so the loadgen gRPC rows have no AIPerf counterpart (their ratios are against AIPerf over"
        " HTTP). Streaming side by side: the `benchmarks/streaming.py` table (AIPerf over HTTP"
        " server-sent events, Triton's generate_stream), not rerun here."
    ]
    aiperf = streaming.aiperf_path(args.aiperf) if "aiperf" in tools else None
    if "aiperf" in tools and aiperf is None:
        notes.append("AIPerf: not installed (pip install aiperf==0.13.0 into a venv, pass --aiperf): skipped")
        tools.remove("aiperf")
    versions = f", AIPerf {streaming.aiperf_version(aiperf)} ({aiperf})" if aiperf is not None else ""
    cells: dict[tuple[str, int], dict[str, list[Run]]] = {
        (m, c): {t: [] for t in tools} for m in models for c in levels[m]
    }
    started, load_before = datetime.now(UTC), os.getloadavg()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        server = EmbeddedServer(
            model_repository(tmp, models), ServerPorts.free(), log_file=tmp / "triton.log"
        )
        with server:
            host = vs_perf_analyzer.machine(server) + versions
            theories = {m: theory(server, m) for m in models}
            shared = {m: vs_perf_analyzer.shared_input(server, m, tmp / f"{m}-input.json") for m in models}
            lg_args = {m: loadgen_args(args, m, shared[m]) for m in models}
            if aiperf is not None:
                args.tokenizer = streaming.make_tokenizer(aiperf, tmp / "tokenizer")
                args.aiperf_inputs = {
                    m: write_aiperf_inputs(tmp, m, kserve_body(server, m, shared[m])) for m in models
                }
            for rep in range(args.repeats):
                order = tools if rep % 2 == 0 else tools[::-1]
                for (model, c), by_tool in cells.items():
                    for tool in order:
                        run: Callable[[], Run]
                        if tool == "aiperf":
                            assert aiperf is not None
                            run = partial(run_aiperf, aiperf, server.http_url, model, c, args, tmp)
                        else:
                            proto = PROTOCOL[tool]
                            url = server.grpc_url if proto == "grpc" else server.http_url
                            run = partial(run_loadgen, url, proto, c, lg_args[model], tmp)
                        r = counted(server, model, run)
                        by_tool[tool].append(r)
                        print(
                            f"  repeat {rep + 1} {model} C={c} {tool}: {progress(r)}",
                            file=sys.stderr,
                            flush=True,
                        )
                        if r.detail and r.status.startswith("failed"):
                            notes.append(f"{tool} {model} C={c} repeat {rep + 1}: {r.status}: {r.detail}")
    wall = time.monotonic() - t0
    command = shlex.join([".venv/bin/python", "benchmarks/vs_aiperf.py", *sys.argv[1:]])
    text = table(cells, theories)
    head = (
        f"`{command}`: {started:%Y-%m-%d %H:%M} UTC, {args.repeats} repeat(s), {wall:.0f} s; {host};"
        f" load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}"
    )
    legend = (
        "Values: medians over repeats; ratios: loadgen / AIPerf, median (min-max) of the per-repeat ratios."
        f" Windows of {args.seconds:g} s (loadgen -p, -s {args.stability_percentage:g} -r {args.max_trials});"
        f" AIPerf --benchmark-duration {3 * args.seconds:g} s; both warm up {args.warmup} ms."
        " Throughput: requests completed per second. In flight: throughput x mean latency (Little's law)."
        " Client CPU ms/req: user+sys of the tool's process tree over its whole run (wait4; start-up"
        " included) / requests Triton completed for the model during the run (warm-up included)."
        " Fidelity: throughput / the model's closed-loop theory (fixed_latency: 1 / (SERVICE_TIME_MS +"
        " PACING_SLACK_US)); a fixed_latency p50 below its 10 ms service time means the client left the"
        " instance idle between requests (the model's pacing absorbs gaps under 5 ms)."
        " Same input bytes for both tools (AIPerf: a fixed KServe v2 JSON body via its"
        f" template endpoint, response_field {RESPONSE_FIELD})."
    )
    streaming.report(head, text, legend, notes, args.output)


if __name__ == "__main__":
    main()
