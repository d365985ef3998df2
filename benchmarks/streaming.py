"""loadgen against perf_analyzer --streaming and AIPerf on one decoupled model, side by side (issue 16).

    .venv/bin/python benchmarks/streaming.py                        # C = 1, 8, 64; 2 repeats; ~8 minutes
    .venv/bin/python benchmarks/streaming.py --levels 8 --repeats 3 --aiperf /tmp/aiperf-venv/bin/aiperf

One embedded Triton serves ``token_stream`` alone (model_repository/token_stream: first response
50 ms after a generation starts, then a response every 10 ms, 8 in all; at most 4 generations at
once, the others wait in FIFO order, so above concurrency 4 the server is the bottleneck). Four
tools measure it, one run at a time, alternately (the order reverses each repeat, so the noise
of the shared machine hits all of them):

* ``pa``: perf_analyzer -i grpc --streaming (Triton's gRPC stream);
* ``lg-grpc``: ``loadgen sweep --streaming`` over the same gRPC stream;
* ``aiperf``: AIPerf's ``template`` endpoint over HTTP, POSTing to Triton's
  /v2/models/token_stream/generate_stream and parsing its server-sent events (AIPerf 0.13.0 has
  no gRPC client, so it cannot drive Triton's gRPC stream);
* ``lg-http``: ``loadgen sweep --streaming -i http``, the same generate_stream endpoint.

Pairs compared: lg-grpc / pa and lg-http / aiperf, the ratio taken within each repeat. All four
send the same prompts (one file in perf_analyzer's JSON format, the same texts as AIPerf JSONL
through a body template), each with MAX_TOKENS 8.

What each tool reports as "first response" and "latency":

* perf_analyzer prints "Detected decoupled model, using the first response for measuring
  latency", but its latency percentiles are taken to the *last* response (InferenceProfiler::
  ValidLatencyMeasurement uses response_timestamps_.back()): 122 ms at C=1 on this model, a
  whole 8-response generation. Its first-response percentiles are therefore computed here from
  its own per-request records (``--profile-export-file``: each request's send time and every
  response's time), over the requests that ended in its last three windows (the stable passes
  it reports), with its own percentile rule. Its reported latency is shown as "request p50".
* loadgen: first-response p50/p99 and request (final-response) p50 of the stored step.
* AIPerf: time_to_first_token and request_latency from profile_export_aiperf.json;
  throughput is its request_throughput. It runs for ``--benchmark-duration`` = 3 windows (what a
  stable loadgen step measures) after a ``--warmup-duration`` of loadgen's warm-up.

AIPerf needs a tokenizer to count tokens. ``--tokenizer builtin`` downloads tiktoken's o200k_base
file at start-up, which fails offline, so a tiny word-level tokenizer is written to a temporary
directory (``tokenizers``, which AIPerf installs) and passed by path; token counts are not
compared here.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import vs_perf_analyzer  # noqa: E402 - benchmarks/vs_perf_analyzer.py: run_child, perf_analyzer_path, machine

from analysis.tables import PERF_ANALYZER_COLUMNS  # noqa: E402
from loadgen.server import EmbeddedServer, ServerPorts  # noqa: E402
from loadgen.storage import RunStore  # noqa: E402

MODEL = "token_stream"
PA_LATENCY_COLUMNS = PERF_ANALYZER_COLUMNS[2:9]
"""perf_analyzer's CSV splits its mean latency into these parts (they add up to it)."""
TOOLS = ("pa", "lg-grpc", "aiperf", "lg-http")
PAIRS = (("lg-grpc", "pa"), ("lg-http", "aiperf"))
LABELS = {"pa": "perf_analyzer", "aiperf": "AIPerf", "lg-grpc": "loadgen", "lg-http": "loadgen"}
PROTOCOL = {"pa": "grpc", "lg-grpc": "grpc", "aiperf": "http", "lg-http": "http"}
DEFAULT_AIPERF = Path("/tmp/aiperf-venv/bin/aiperf")
TEMPLATE = '{"PROMPT": {{ text|tojson }}, "MAX_TOKENS": %d}'
TOKENIZER_SCRIPT = """
import sys
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
vocab = {"[UNK]": 0}
for word in sys.argv[2:]:
    vocab.setdefault(word, len(vocab))
tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
tok.decoder = decoders.WordPiece(prefix="##")
PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(sys.argv[1])
"""


@dataclass
class Measurement:
    status: str  # ok, unstable, errors, failed (...), timeout
    throughput: float | None = None  # requests completed per second
    first_p50_us: float | None = None
    first_p99_us: float | None = None
    request_p50_us: float | None = None  # send to final response
    cpu_s: float = 0.0  # the tool's process tree, user+sys (wait4)
    detail: str = ""
    request_avg_us: float | None = None

    @property
    def in_flight(self) -> float | None:
        """Requests in flight on average, by Little's law: throughput x mean request latency."""
        if self.throughput is None or self.request_avg_us is None:
            return None
        return self.throughput * self.request_avg_us / 1e6


# -- inputs --------------------------------------------------------------------------------------------


def prompts(count: int) -> list[str]:
    return [f"prompt {i} tell me a story about the sea" for i in range(count)]


def write_inputs(tmp: Path, count: int, max_tokens: int) -> dict[str, Path]:
    """The same prompts for every tool: perf_analyzer JSON (loadgen reads it too), AIPerf JSONL
    and AIPerf's body template."""
    texts = prompts(count)
    pa_json, jsonl, template = tmp / "prompts.json", tmp / "prompts.jsonl", tmp / "template.json"
    pa_json.write_text(json.dumps({"data": [{"PROMPT": [t], "MAX_TOKENS": [max_tokens]} for t in texts]}))
    jsonl.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    template.write_text(TEMPLATE % max_tokens)
    return {"pa_json": pa_json, "jsonl": jsonl, "template": template}


def model_repository(tmp: Path) -> Path:
    repo = tmp / "repository"
    shutil.copytree(
        ROOT / "model_repository" / MODEL, repo / MODEL, ignore=shutil.ignore_patterns("__pycache__")
    )
    return repo


def max_active(server: EmbeddedServer) -> int:
    url = f"{server.http_url}/v2/models/{MODEL}/config"
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - our own server
        config = json.load(resp)
    return int(config["parameters"]["MAX_ACTIVE"]["string_value"])


# -- perf_analyzer ---------------------------------------------------------------------------------------


def pa_percentile(sorted_values: list[int], p: float) -> float:
    """perf_analyzer's own rule (InferenceProfiler::SummarizeLatency)."""
    return float(sorted_values[int(p / 100 * (len(sorted_values) - 1) + 0.5)])


def pa_first_responses(export: Path) -> list[int]:
    """First-response latencies (ns) of the requests whose last response fell in perf_analyzer's last
    three windows, from its --profile-export-file."""
    experiment = json.loads(export.read_text())["experiments"][-1]
    bounds = experiment["window_boundaries"]
    lo, hi = bounds[max(0, len(bounds) - 4)], bounds[-1]
    out = []
    for request in experiment["requests"]:
        times = request["response_timestamps"]
        if times and lo <= times[-1] <= hi:
            out.append(times[0] - request["timestamp"])
    return sorted(out)


def run_pa(pa: str, url: str, c: int, args: argparse.Namespace, tmp: Path) -> Measurement:
    out_csv, export = tmp / f"pa-{c}.csv", tmp / f"pa-{c}.json"
    for f in (out_csv, export):
        f.unlink(missing_ok=True)
    cmd = [pa, "-m", MODEL, "-u", url, "-i", "grpc", "--streaming", "--concurrency-range", str(c)]
    cmd += ["-p", str(args.measurement_interval), "-s", str(args.stability_percentage)]
    cmd += ["-r", str(args.max_trials), "--max-threads", str(min(c, args.pa_max_threads))]
    cmd += ["--input-data", str(args.inputs["pa_json"]), "-f", str(out_csv)]
    cmd += ["--profile-export-file", str(export)]
    child = vs_perf_analyzer.run_child(cmd, args.timeout_s, args.max_rss_mb)
    if child.rc is None:
        return Measurement(child.why_killed, cpu_s=child.cpu_s)
    passes = [float(x) for x in vs_perf_analyzer.PASS_RE.findall(child.stdout)]
    first = pa_first_responses(export) if export.exists() else []
    m = Measurement("failed", cpu_s=child.cpu_s)
    if first:
        m.first_p50_us, m.first_p99_us = (pa_percentile(first, p) / 1000 for p in (50, 99))
    if out_csv.exists():
        row = next(r for r in csv.DictReader(out_csv.open()) if int(r["Concurrency"]) == c)
        m.status, m.throughput = "ok", float(row["Inferences/Second"])
        m.request_p50_us = float(row["p50 latency"])
        m.request_avg_us = sum(float(row[k]) for k in PA_LATENCY_COLUMNS)
    elif "stable measurement" in child.stdout + child.stderr and len(passes) >= 3:
        m.status, m.throughput = "unstable", statistics.mean(passes[-3:])
    else:
        tail = (child.stderr or child.stdout).strip().splitlines()[-1:] or [""]
        m.status, m.detail = f"failed (rc {child.rc})", tail[0][:300]
    return m


# -- loadgen ---------------------------------------------------------------------------------------------


def run_loadgen(proto: str, url: str, c: int, args: argparse.Namespace, tmp: Path) -> Measurement:
    db = tmp / f"lg-{proto}-{c}.db"
    db.unlink(missing_ok=True)
    exe = Path(sys.executable).parent / "loadgen"
    cmd = [str(exe) if exe.exists() else "loadgen", "sweep", "-m", MODEL, "--streaming"]
    cmd += ["-i", proto, "-u", url, "--input-data", str(args.inputs["pa_json"]), "--concurrency", str(c)]
    cmd += ["-p", str(args.measurement_interval), "-s", str(args.stability_percentage)]
    cmd += ["-r", str(args.max_trials), "--warmup", str(args.warmup), "-q", "--no-metrics"]
    cmd += ["--db", f"sqlite:///{db}"]
    child = vs_perf_analyzer.run_child(cmd, args.timeout_s, args.max_rss_mb)
    if child.rc is None:
        return Measurement(child.why_killed, cpu_s=child.cpu_s)
    if child.rc != 0 or not db.exists():
        return Measurement(f"failed (rc {child.rc})", cpu_s=child.cpu_s, detail=child.stderr.strip()[-300:])
    with RunStore(f"sqlite:///{db}") as store:
        step = store.steps(store.list_runs(limit=1)[0].id)[0]
    status = "errors" if step.error_count else ("ok" if step.stable else "unstable")
    return Measurement(
        status,
        step.throughput,
        step.first_response_p50_us,
        step.first_response_p99_us,
        step.lat_p50_us,
        child.cpu_s,
        detail=f"errors {step.errors}" if step.error_count else "",
        request_avg_us=step.lat_avg_us,
    )


# -- AIPerf ----------------------------------------------------------------------------------------------


def aiperf_path(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    if DEFAULT_AIPERF.exists():
        return str(DEFAULT_AIPERF)
    return shutil.which("aiperf")


def aiperf_version(aiperf: str) -> str:
    proc = subprocess.run([aiperf, "--version"], capture_output=True, text=True, timeout=60)
    return (proc.stdout.strip().splitlines() or ["?"])[-1]


def make_tokenizer(aiperf: str, where: Path) -> Path:
    """A word-level tokenizer of the prompts' words, saved where AutoTokenizer loads it by path."""
    words = sorted({w for text in prompts(64) for w in text.split()})
    python = Path(aiperf).parent / "python"
    subprocess.run([str(python), "-c", TOKENIZER_SCRIPT, str(where), *words], check=True, capture_output=True)
    return where


def aiperf_error(output: str) -> str:
    """The reason lines of AIPerf's exit-error box, or its last line."""
    reasons = [ln.strip(" │") for ln in output.splitlines() if "Reason:" in ln or "Error:" in ln]
    lines = reasons or output.strip().splitlines()[-1:] or [""]
    return " ".join(lines)[:400]


@dataclass
class AiperfRun:
    """One AIPerf run: its process (CPU, exit code) and its summary, or why there is none."""

    child: vs_perf_analyzer.Child
    data: dict[str, Any] | None
    why: str = ""

    def stat(self, metric: str, key: str, scale: float = 1.0) -> float | None:
        value = ((self.data or {}).get(metric) or {}).get(key)
        return None if value is None else float(value) * scale

    @property
    def errors(self) -> float:
        return self.stat("error_request_count", "avg") or 0


def aiperf_run(cmd: list[str], out: Path, args: argparse.Namespace) -> AiperfRun:
    """Run AIPerf (``cmd`` writes its artifacts to ``out``) and read profile_export_aiperf.json."""
    child = vs_perf_analyzer.run_child(cmd, args.timeout_s, args.max_rss_mb)
    summary = out / "profile_export_aiperf.json"
    if child.rc is None:
        return AiperfRun(child, None, child.why_killed)
    if child.rc != 0 or not summary.exists():
        return AiperfRun(child, None, aiperf_error(child.stdout + "\n" + child.stderr))
    return AiperfRun(child, json.loads(summary.read_text()))


def run_aiperf(aiperf: str, url: str, c: int, args: argparse.Namespace, tmp: Path) -> Measurement:
    out = tmp / f"aiperf-{c}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [aiperf, "profile", "-m", MODEL, "--tokenizer", str(args.tokenizer), "--url", url]
    cmd += ["--endpoint", f"/v2/models/{MODEL}/generate_stream", "--endpoint-type", "template", "--streaming"]
    cmd += ["--extra-inputs", f"payload_template:{args.inputs['template']}"]
    cmd += ["--extra-inputs", "response_field:TOKEN"]
    cmd += ["--input-file", str(args.inputs["jsonl"]), "--custom-dataset-type", "single_turn"]
    cmd += ["--concurrency", str(c), "--benchmark-duration", f"{3 * args.measurement_interval / 1000:g}"]
    cmd += ["--warmup-duration", f"{args.warmup / 1000:g}", "--ui", "none", "--random-seed", "0"]
    cmd += ["--artifact-dir", str(out)]
    run = aiperf_run(cmd, out, args)
    if run.child.rc is None:
        return Measurement(run.why, cpu_s=run.child.cpu_s)
    if run.data is None:
        return Measurement(f"failed (rc {run.child.rc})", cpu_s=run.child.cpu_s, detail=run.why)
    return Measurement(
        "errors" if run.errors else "ok",
        run.stat("request_throughput", "avg"),
        run.stat("time_to_first_token", "p50", 1000),
        run.stat("time_to_first_token", "p99", 1000),
        run.stat("request_latency", "p50", 1000),
        run.child.cpu_s,
        detail=f"{run.errors:.0f} errors" if run.errors else "",
        request_avg_us=run.stat("request_latency", "avg", 1000),
    )


# -- the table -------------------------------------------------------------------------------------------


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def fmt(value: float | None, spec: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, spec)


def ratios(a: Sequence[Any], b: Sequence[Any], key: str) -> list[float | None]:
    """Per repeat, ``key`` of ``a`` over ``key`` of ``b`` (None where either is missing)."""
    out: list[float | None] = []
    for x, y in zip(a, b, strict=True):
        vx, vy = getattr(x, key), getattr(y, key)
        out.append(vx / vy if vx is not None and vy else None)
    return out


def spread(values: list[float | None]) -> str:
    present = sorted(v for v in values if v is not None)
    if not present:
        return "-"
    mid = statistics.median(present)
    return f"{mid:.2f} ({present[0]:.2f}-{present[-1]:.2f})" if len(present) > 1 else f"{mid:.2f}"


def value(ms: list[Measurement], key: str, spec: str, scale: float = 1.0) -> str:
    text = fmt(median([getattr(m, key) for m in ms]), spec, scale)
    bad = sorted({m.status for m in ms if m.status != "ok"})
    return f"{text} ({', '.join(bad)})" if bad else text


def table(cells: dict[int, dict[str, list[Measurement]]], tools: list[str], bound_above: int) -> str:
    head = ["C", "server-bound", "other tool", "protocol", "other infer/s", "loadgen infer/s"]
    head += ["throughput ratio"]
    head += ["other first p50 ms", "loadgen first p50 ms", "first p50 ratio"]
    head += ["other first p99 ms", "loadgen first p99 ms", "first p99 ratio", "request p50 ratio"]
    head += [
        "first p50, p99 within 5%",
        "in flight (Little), other / loadgen",
        "client CPU s, other / loadgen",
    ]
    lines = ["| " + " | ".join(head) + " |", "|--:|---|---|---|" + "--:|" * (len(head) - 4)]
    for c, by_tool in cells.items():
        for lg, other in PAIRS:
            if lg not in tools or other not in tools:
                continue
            a, b = by_tool[lg], by_tool[other]
            within = [median(ratios(a, b, key)) for key in ("first_p50_us", "first_p99_us")]
            row = [str(c), "yes" if c > bound_above else "no", LABELS[other], PROTOCOL[other]]
            row += [value(b, "throughput", ".2f"), value(a, "throughput", ".2f")]
            row.append(spread(ratios(a, b, "throughput")))
            row += [value(b, "first_p50_us", ".1f", 1e-3), value(a, "first_p50_us", ".1f", 1e-3)]
            row.append(spread(ratios(a, b, "first_p50_us")))
            row += [value(b, "first_p99_us", ".1f", 1e-3), value(a, "first_p99_us", ".1f", 1e-3)]
            row += [spread(ratios(a, b, "first_p99_us")), spread(ratios(a, b, "request_p50_us"))]
            row.append(
                ", ".join("-" if r is None else ("yes" if abs(r - 1) <= 0.05 else "no") for r in within)
            )
            in_flight = [median([m.in_flight for m in ms]) for ms in (b, a)]
            row.append(" / ".join(fmt(v, ".2f") for v in in_flight))
            cpu = [median([m.cpu_s for m in ms]) for ms in (b, a)]
            row.append(" / ".join(fmt(v, ".1f") for v in cpu))
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def report(head: str, text: str, legend: str, notes: list[str], output: Path | None) -> None:
    """Print a side-by-side table with its header, legend and notes; append them to ``output``."""
    block = f"\n{head}\n\n{text}\n\n{legend}\n" + "".join(f"- {n}\n" for n in notes)
    print(block, end="")
    if output:
        with output.open("a") as f:
            f.write(block)


# -- main ------------------------------------------------------------------------------------------------


def progress(m: Measurement) -> str:
    first = f"{fmt(m.first_p50_us, '.1f', 1e-3)} / {fmt(m.first_p99_us, '.1f', 1e-3)} ms"
    return (
        f"{fmt(m.throughput, '.2f')} infer/s, first response p50 / p99 {first}, request p50"
        f" {fmt(m.request_p50_us, '.1f', 1e-3)} ms, in flight {fmt(m.in_flight, '.2f')}, CPU {m.cpu_s:.1f} s,"
        f" {m.status} {m.detail}"
    ).rstrip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", default="1,8,64", help="comma-separated concurrency levels")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"subset of {','.join(TOOLS)}")
    ap.add_argument("--repeats", type=int, default=2, help="alternating rounds (the order reverses each)")
    ap.add_argument("--measurement-interval", type=int, default=4000, help="window, ms (AIPerf: 3 of them)")
    ap.add_argument(
        "--warmup", type=int, default=1000, help="loadgen --warmup and AIPerf --warmup-duration, ms"
    )
    ap.add_argument("--stability-percentage", type=float, default=10, help="loadgen and perf_analyzer")
    ap.add_argument(
        "--max-trials", type=int, default=6, help="windows per step at most (loadgen, perf_analyzer)"
    )
    ap.add_argument("--max-tokens", type=int, default=8, help="MAX_TOKENS of every request")
    ap.add_argument("--prompts", type=int, default=16, help="distinct prompts")
    ap.add_argument("--pa-max-threads", type=int, default=4, help="perf_analyzer --max-threads (capped at C)")
    ap.add_argument(
        "--perf-analyzer", help="perf_analyzer binary (default: ../shared/tools/get-perf-analyzer)"
    )
    ap.add_argument(
        "--aiperf", help=f"aiperf executable of its own venv (default: {DEFAULT_AIPERF}, else PATH)"
    )
    ap.add_argument("--timeout-s", type=float, default=120, help="hard limit per tool run (s)")
    ap.add_argument(
        "--max-rss-mb", type=float, default=4096, help="kill a tool run whose RSS grows past this"
    )
    ap.add_argument("--output", type=Path, help="append the table (with command and machine) to this file")
    args = ap.parse_args()
    tools = [t for t in args.tools.split(",") if t]
    unknown = set(tools) - set(TOOLS)
    if unknown:
        sys.exit(f"unknown tools {sorted(unknown)}: choose from {','.join(TOOLS)}")
    levels = [int(x) for x in args.levels.split(",")]
    notes: list[str] = []
    pa = vs_perf_analyzer.perf_analyzer_path(args.perf_analyzer) if "pa" in tools else None
    aiperf = aiperf_path(args.aiperf) if "aiperf" in tools else None
    if "aiperf" in tools and aiperf is None:
        notes.append("AIPerf: not installed (pip install aiperf==0.13.0 into a venv, pass --aiperf): skipped")
        tools.remove("aiperf")
    elif aiperf is not None:
        notes.append(f"AIPerf {aiperf_version(aiperf)} ({aiperf})")
    cells: dict[int, dict[str, list[Measurement]]] = {c: {t: [] for t in tools} for c in levels}
    started, load_before = datetime.now(UTC), os.getloadavg()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        args.inputs = write_inputs(tmp, args.prompts, args.max_tokens)
        if aiperf is not None:
            args.tokenizer = make_tokenizer(aiperf, tmp / "tokenizer")
        server = EmbeddedServer(model_repository(tmp), ServerPorts.free(), log_file=tmp / "triton.log")
        with server:
            host = vs_perf_analyzer.machine(server)
            bound_above = max_active(server)
            for rep in range(args.repeats):
                order = tools if rep % 2 == 0 else tools[::-1]
                for c in levels:
                    for tool in order:
                        if tool == "pa":
                            assert pa is not None
                            m = run_pa(pa, server.grpc_url, c, args, tmp)
                        elif tool == "aiperf":
                            assert aiperf is not None
                            m = run_aiperf(aiperf, server.http_url, c, args, tmp)
                        else:
                            proto = PROTOCOL[tool]
                            url = server.grpc_url if proto == "grpc" else server.http_url
                            m = run_loadgen(proto, url, c, args, tmp)
                        cells[c][tool].append(m)
                        print(f"  repeat {rep + 1} C={c} {tool}: {progress(m)}", file=sys.stderr, flush=True)
                        if m.detail and m.status.startswith("failed"):
                            notes.append(f"{tool} C={c} repeat {rep + 1}: {m.status}: {m.detail}")
    wall = time.monotonic() - t0
    command = shlex.join([".venv/bin/python", "benchmarks/streaming.py", *sys.argv[1:]])
    text = table(cells, tools, bound_above)
    head = (
        f"`{command}`: {started:%Y-%m-%d %H:%M} UTC, {args.repeats} repeat(s), {wall:.0f} s; {host};"
        f" load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}"
    )
    legend = (
        "Values: medians over repeats; ratios: loadgen / other, median (min-max) of the per-repeat ratios."
        " Throughput: requests completed per second. First response: send to first response"
        " (perf_analyzer's computed from its --profile-export-file, its last 3 windows); request p50: send to"
        " final response (perf_analyzer's reported latency). Server-bound: C above the model's MAX_ACTIVE"
        f" ({bound_above}). In flight: throughput x mean request latency (Little's law), how much of C a"
        " tool really keeps at the server. Client CPU: user+sys of the tool's process tree over its whole"
        " run (wait4)."
    )
    report(head, text, legend, notes, args.output)


if __name__ == "__main__":
    main()
