"""loadgen against NVIDIA's perf_analyzer, side by side on one embedded Triton server.

    python benchmarks/vs_perf_analyzer.py                                   # identity, 1,8,64,256, grpc+http
    python benchmarks/vs_perf_analyzer.py --protocols grpc --repeats 3 --output benchmarks/RESULTS.md
    python benchmarks/vs_perf_analyzer.py --model accumulate --levels 1,8,32 --protocols grpc   # sequences

For each protocol and concurrency level both tools run as subprocesses, alternately (the order
flips each repeat), with the same window length, stability threshold and trial limit. Reported:
throughput, loadgen/perf_analyzer ratios of throughput and p50/p99 latency, and client CPU
seconds (user+sys from wait4) per 1000 requests completed, medians over repeats.
Requests completed: loadgen's stored windows plus an estimate of its warm-up (throughput x
--warmup); perf_analyzer's passes, estimated as sum(pass throughput) x window length.
A perf_analyzer run that passes --timeout-s or --max-rss-mb is killed and recorded as such.

Both tools send the same bytes: by default (``--input-data shared``) one sample of loadgen's
seeded random data (uniform [0, 1) for floats) is written as a perf_analyzer JSON file (``b64``)
and given to both. Their own "random" data differ: perf_analyzer fills every byte with rand(), so
its FP32 inputs span +-3e38 with NaN, Inf and denormals, which slows a CNN on a CPU by 5-10%.

Triton CPU per request: the server process's (and its backend stubs') user+sys time over each
tool run divided by the requests the server completed for the model in that time (its
``/stats``), so the server's own cost per request is seen per protocol and per client; and
Triton's mean batch over the run (inferences / executions), which a client's turnaround moves.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from loadgen.inputs import model_inputs
from loadgen.server import EmbeddedServer, ServerPorts
from loadgen.storage import RunStore

ROOT = Path(__file__).resolve().parents[1]
PASS_RE = re.compile(r"Pass \[\d+\] throughput: ([\d.]+) infer/sec")


@dataclass
class Result:
    status: str  # ok, unstable, timeout, rss, failed (rc N)
    throughput: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    cpu_s: float = 0.0
    requests: float = 0.0
    server_us: float | None = None  # Triton CPU per request it completed during the run
    outside_us: float | None = None  # mean latency not spent in Triton's queue and compute
    batch: float | None = None  # Triton's mean execution (batch) size during the run

    @property
    def cpu_per_1k(self) -> float | None:
        return 1000 * self.cpu_s / self.requests if self.requests > 0 else None


@dataclass
class Child:
    rc: int | None  # None: killed by us
    why_killed: str
    cpu_s: float
    stdout: str
    stderr: str


def perf_analyzer_path(explicit: str | None) -> str:
    if explicit:
        return explicit
    helper = ROOT.parent / "shared" / "tools" / "get-perf-analyzer"
    if helper.exists():
        return subprocess.run([str(helper)], capture_output=True, text=True, check=True).stdout.strip()
    found = shutil.which("perf_analyzer")
    if found is None:
        sys.exit("perf_analyzer not found: pass --perf-analyzer PATH")
    return found


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_child(cmd: list[str], timeout_s: float, max_rss_mb: float) -> Child:
    """Run cmd in its own session; kill the group on timeout or RSS; CPU time from wait4."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, start_new_session=True)
        deadline, why = time.monotonic() + timeout_s, ""
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if not why and time.monotonic() > deadline:
                why = "timeout"
            elif not why and rss_mb(proc.pid) > max_rss_mb:
                why = "rss"
            if why:
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.1)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Child(
            None if why else proc.returncode,
            why,
            usage.ru_utime + usage.ru_stime,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def tree_cpu_s(root: int) -> float:
    """User+sys seconds of a live process and its descendants (Triton and its backend stubs)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])))
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, (0, 0.0))[1]
        todo += children.get(pid, [])
    return total / os.sysconf("SC_CLK_TCK")


class ServerCost:
    """Triton's CPU time, completed requests and executions for one model, around a tool run."""

    def __init__(self, server: EmbeddedServer, model: str) -> None:
        self.server, self.model = server, model

    def read(self) -> tuple[float, int, int, int]:
        """CPU seconds, successful requests, inferences, executions (model batches)."""
        cpu = tree_cpu_s(self.server.pid or 0)
        url = f"{self.server.http_url}/v2/models/{self.model}/stats"
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - our own server
            stats = json.load(resp)["model_stats"]
        done = sum(int(s["inference_stats"]["success"]["count"]) for s in stats)
        inferences = sum(int(s["inference_count"]) for s in stats)
        return cpu, done, inferences, sum(int(s["execution_count"]) for s in stats)

    def around(self, run: Callable[..., Result], *args: Any) -> Result:
        cpu0, done0, inferences0, executions0 = self.read()
        result = run(*args)
        cpu1, done1, inferences1, executions1 = self.read()
        if done1 > done0:
            result.server_us = 1e6 * (cpu1 - cpu0) / (done1 - done0)
        if executions1 > executions0:
            result.batch = (inferences1 - inferences0) / (executions1 - executions0)
        return result


def shared_input(server: EmbeddedServer, model: str, path: Path, seed: int = 0) -> Path:
    """One sample of loadgen-style random data as a perf_analyzer JSON file both tools read."""
    with urllib.request.urlopen(f"{server.http_url}/v2/models/{model}", timeout=5) as resp:  # noqa: S310
        metadata = json.load(resp)
    with urllib.request.urlopen(f"{server.http_url}/v2/models/{model}/config", timeout=5) as resp:  # noqa: S310
        config = json.load(resp)
    rng = np.random.default_rng(seed)
    entry: dict[str, dict[str, str]] = {}
    for spec in model_inputs(metadata, config, {}):
        if spec.datatype not in ("FP32", "FP64", "FP16"):
            sys.exit(f"--input-data shared handles float inputs only; {spec.name} is {spec.datatype}")
        dtype = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16}[spec.datatype]
        raw = rng.random(size=spec.shape).astype(dtype).tobytes()
        entry[spec.name] = {"b64": base64.b64encode(raw).decode()}
    path.write_text(json.dumps({"data": [entry]}))
    return path


OUTSIDE_COLUMNS = ("Client Send", "Network+Server Send/Recv", "Client Recv")


def outside_us(row: dict[str, str]) -> float | None:
    """From a perf_analyzer-format CSV row (both tools write one): the part of the mean latency
    outside Triton's queue and compute, i.e. client turnaround, network and Triton's frontend."""
    try:
        return sum(float(row[k]) for k in OUTSIDE_COLUMNS)
    except (KeyError, ValueError):
        return None


def split_cpus() -> tuple[set[int], set[int]]:
    """``--pin``: the upper half of this process's CPUs for Triton, the lower half for the tools,
    as if they ran on two machines: neither tool's own CPU use then slows the server."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        sys.exit("--pin needs at least 2 CPUs")
    half = len(cpus) // 2
    return set(cpus[half:]), set(cpus[:half])


def run_perf_analyzer(pa: str, url: str, proto: str, c: int, args: argparse.Namespace, tmp: Path) -> Result:
    out_csv = tmp / f"pa-{proto}-{c}.csv"
    out_csv.unlink(missing_ok=True)
    cmd = [pa, "-m", args.model, "-u", url.removeprefix("http://"), "-i", proto]
    cmd += ["--concurrency-range", str(c), "-p", str(args.measurement_interval), "--async", "-v"]
    cmd += ["-s", str(args.stability_percentage), "-r", str(args.max_trials), "-f", str(out_csv)]
    cmd += ["--max-threads", str(min(c, args.pa_max_threads))]
    if args.input_data != "random":
        cmd += ["--input-data", args.input_data_arg]
    cmd += shlex.split(args.extra_pa_args)
    child = run_child(cmd, args.timeout_s, args.max_rss_mb)
    passes = [float(x) for x in PASS_RE.findall(child.stdout)]
    requests = sum(passes) * args.measurement_interval / 1000
    if child.rc is None:
        return Result(child.why_killed, cpu_s=child.cpu_s, requests=requests)
    if out_csv.exists():
        row = next(r for r in csv.DictReader(out_csv.open()) if int(r["Concurrency"]) == c)
        tput, p50, p99 = (float(row[k]) for k in ("Inferences/Second", "p50 latency", "p99 latency"))
        return Result("ok", tput, p50, p99, child.cpu_s, requests, outside_us=outside_us(row))
    if "stable measurement" in child.stdout + child.stderr and len(passes) >= 3:
        return Result("unstable", statistics.mean(passes[-3:]), cpu_s=child.cpu_s, requests=requests)
    tail = (child.stderr or child.stdout).strip().splitlines()[-1:] or [""]
    print(f"    perf_analyzer rc={child.rc}: {tail[0][:200]}", file=sys.stderr)
    return Result(f"failed (rc {child.rc})", cpu_s=child.cpu_s, requests=requests)


def loadgen_cmd(url: str, proto: str, args: argparse.Namespace) -> list[str]:
    exe = Path(sys.executable).parent / "loadgen"
    cmd = [str(exe) if exe.exists() else "loadgen", "sweep", "-m", args.model, "-u", url, "-i", proto]
    cmd += ["-p", str(args.measurement_interval), "-s", str(args.stability_percentage)]
    if args.input_data != "random":
        cmd += ["--input-data", args.input_data_arg]
    return cmd + ["-r", str(args.max_trials), "-q", "--no-metrics", *shlex.split(args.extra_loadgen_args)]


def run_loadgen(url: str, proto: str, c: int, args: argparse.Namespace, tmp: Path) -> Result:
    db, out_csv = tmp / f"lg-{proto}-{c}.db", tmp / f"lg-{proto}-{c}.csv"
    for f in (db, out_csv):
        f.unlink(missing_ok=True)
    cmd = loadgen_cmd(url, proto, args) + [
        "--concurrency",
        str(c),
        "--db",
        f"sqlite:///{db}",
        "--csv",
        str(out_csv),
    ]
    child = run_child(cmd, args.timeout_s, args.max_rss_mb)
    if child.rc is None or not out_csv.exists():
        print(f"    loadgen rc={child.rc} {child.why_killed}: {child.stderr.strip()[-200:]}", file=sys.stderr)
        return Result(child.why_killed or f"failed (rc {child.rc})", cpu_s=child.cpu_s)
    row = next(csv.DictReader(out_csv.open()))
    with RunStore(f"sqlite:///{db}") as store:
        step = store.steps(store.list_runs(limit=1)[0].id)[0]
    warmup_s = float(args.loadgen_warmup_ms) / 1000
    requests = sum(w.request_count for w in step.windows) + step.throughput * warmup_s
    tput, p50, p99 = (float(row[k]) for k in ("Inferences/Second", "p50 latency", "p99 latency"))
    status = "ok" if step.stable else "unstable"
    return Result(status, tput, p50, p99, child.cpu_s, requests, outside_us=outside_us(row))


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def cell(results: list[Result], value: float | None, fmt: str) -> str:
    text = "-" if value is None else format(value, fmt)
    bad = [r.status for r in results if r.status != "ok"]
    return f"{text} ({', '.join(bad)})" if bad else text


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def table(
    model: str, cells: dict[tuple[str, int], dict[str, list[Result]]], startup: dict[str, float]
) -> str:
    lines = [
        "| model | protocol | concurrency | PA infer/s | loadgen infer/s | throughput ratio | p50 ratio"
        " | p99 ratio | PA CPU s/1k req | loadgen CPU s/1k req | loadgen excl. start-up"
        " | Triton CPU us/req (PA) | Triton CPU us/req (loadgen) | outside Triton us (PA)"
        " | outside Triton us (loadgen) | Triton batch (PA) | Triton batch (loadgen) |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for (proto, c), by_tool in cells.items():
        pa, lg = by_tool["pa"], by_tool["lg"]

        def med(rs: list[Result], key: str) -> float | None:
            return median([getattr(r, key) for r in rs])

        row = [
            model,
            proto,
            str(c),
            cell(pa, med(pa, "throughput"), ".0f"),
            cell(lg, med(lg, "throughput"), ".0f"),
        ]
        row += [ratio(med(lg, key), med(pa, key)) for key in ("throughput", "p50_us", "p99_us")]
        row += ["-" if (v := med(rs, "cpu_per_1k")) is None else f"{v:.3f}" for rs in (pa, lg)]
        net = median([1000 * (r.cpu_s - startup[proto]) / r.requests if r.requests else None for r in lg])
        row.append("-" if net is None else f"{net:.3f}")
        row += ["-" if (v := med(rs, "server_us")) is None else f"{v:.0f}" for rs in (pa, lg)]
        row += ["-" if (v := med(rs, "outside_us")) is None else f"{v:.0f}" for rs in (pa, lg)]
        row += ["-" if (v := med(rs, "batch")) is None else f"{v:.2f}" for rs in (pa, lg)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def machine(server: EmbeddedServer) -> str:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    with urllib.request.urlopen(f"{server.http_url}/v2", timeout=5) as resp:  # noqa: S310 - our own server
        triton = json.load(resp).get("version", "?")
    return f"nproc {os.cpu_count()}, {cpu}, Python {platform.python_version()}, Triton {triton}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="identity")
    ap.add_argument("--levels", default="1,8,64,256", help="comma-separated concurrency levels")
    ap.add_argument("--protocols", default="grpc,http")
    ap.add_argument("--measurement-interval", type=int, default=3000, help="window length, ms (both tools)")
    ap.add_argument("--stability-percentage", type=float, default=10, help="both tools")
    ap.add_argument("--max-trials", type=int, default=10, help="both tools")
    ap.add_argument("--repeats", type=int, default=2, help="alternating pairs per cell")
    ap.add_argument("--extra-loadgen-args", default="", help='passed to loadgen sweep, e.g. "--workers 2"')
    ap.add_argument(
        "--extra-pa-args", default="", help='passed to perf_analyzer, e.g. "--sequence-length 20"'
    )
    ap.add_argument(
        "--loadgen-warmup-ms", type=int, default=1000, help="loadgen's --warmup (for the request count)"
    )
    ap.add_argument(
        "--input-data",
        choices=("shared", "zero", "random"),
        default="shared",
        help="shared: one file of loadgen's random data for both (default); zero; random: each tool's own",
    )
    ap.add_argument(
        "--pin",
        action="store_true",
        help="pin Triton to half the CPUs and the tools to the other half (a server-bound model then "
        "stays server-bound whatever CPU each tool uses)",
    )
    ap.add_argument("--pa-max-threads", type=int, default=4, help="perf_analyzer --max-threads (capped at C)")
    ap.add_argument(
        "--perf-analyzer", help="perf_analyzer binary (default: ../shared/tools/get-perf-analyzer)"
    )
    ap.add_argument("--timeout-s", type=float, default=180, help="hard limit per tool run (s)")
    ap.add_argument(
        "--max-rss-mb", type=float, default=4096, help="kill a tool run whose RSS grows past this"
    )
    ap.add_argument(
        "--output", type=Path, help="append the table (with command and machine) to this markdown file"
    )
    args = ap.parse_args()
    if "--warmup" not in args.extra_loadgen_args:
        args.extra_loadgen_args += f" --warmup {args.loadgen_warmup_ms}"
    pa = perf_analyzer_path(args.perf_analyzer)
    levels = [int(x) for x in args.levels.split(",")]
    protocols = args.protocols.split(",")
    cells: dict[tuple[str, int], dict[str, list[Result]]] = {}
    started = datetime.now(UTC)
    server_cpus, client_cpus = split_cpus() if args.pin else (None, None)
    if server_cpus is not None:  # the server (and its stubs) inherit this; the tools the next one
        os.sched_setaffinity(0, server_cpus)
    with tempfile.TemporaryDirectory() as tmpdir, EmbeddedServer(ports=ServerPorts.free()) as server:
        if client_cpus is not None:
            os.sched_setaffinity(0, client_cpus)
        tmp = Path(tmpdir)
        host = machine(server)
        if server_cpus is not None and client_cpus is not None:
            host += f"; Triton pinned to CPUs {sorted(server_cpus)}, the tools to {sorted(client_cpus)}"
        cost = ServerCost(server, args.model)
        args.input_data_arg = args.input_data
        if args.input_data == "shared":
            args.input_data_arg = str(shared_input(server, args.model, tmp / "input.json"))
        startup: dict[str, float] = {}
        for proto in protocols:
            url = server.grpc_url if proto == "grpc" else server.http_url
            probe = loadgen_cmd(url, proto, args)
            probe[probe.index(args.model)] = "no_such_model_probe"
            probe += ["--db", f"sqlite:///{tmp / 'probe.db'}"]
            startup[proto] = run_child(probe, args.timeout_s, args.max_rss_mb).cpu_s
            for c in levels:
                by_tool: dict[str, list[Result]] = {"pa": [], "lg": []}
                cells[proto, c] = by_tool
                for rep in range(args.repeats):
                    for tool in ("pa", "lg") if rep % 2 == 0 else ("lg", "pa"):
                        if tool == "pa":
                            r = cost.around(run_perf_analyzer, pa, url, proto, c, args, tmp)
                        else:
                            r = cost.around(run_loadgen, url, proto, c, args, tmp)
                        by_tool[tool].append(r)
                        print(f"  {proto} C={c} rep {rep + 1} {tool}: {r}", file=sys.stderr)
    text = table(args.model, cells, startup)
    fixed = ", ".join(f"{p} {s:.2f} s" for p, s in startup.items())
    notes = (
        "CPU = user+sys of the tool's process tree (wait4) / requests completed x 1000. perf_analyzer's"
        f" requests are estimated as sum(pass throughput) x {args.measurement_interval} ms; loadgen's are"
        f" its stored windows + throughput x {args.loadgen_warmup_ms} ms warm-up. loadgen's figure includes"
        f" its start-up (imports, connect: {fixed} CPU, measured on an unknown model), which the last"
        f" column subtracts. Ratios are loadgen / perf_analyzer, medians of {args.repeats} alternating"
        f" repeat(s); perf_analyzer --max-threads min(C, {args.pa_max_threads}). (unstable)/(timeout):"
        " runs not ok; an unstable perf_analyzer run shows the mean of its last 3 passes, no percentiles."
        f" Input data: {args.input_data}. Triton CPU us/req: the server's user+sys time during the run"
        " / requests it completed for the model (its own cost per request, per protocol and client)."
        " Outside Triton us: each tool's own mean latency minus Triton's queue and compute for it (its"
        " CSV's Client Send + Network+Server Send/Recv + Client Recv): client turnaround, network and"
        " Triton's protocol frontend. Triton batch: inferences / executions in Triton's /stats over"
        " the run (the dynamic batcher's mean batch)."
    )
    print("\n" + text + "\n\n" + notes)
    if args.output:
        command = shlex.join(["python", "benchmarks/vs_perf_analyzer.py", *sys.argv[1:]])
        with args.output.open("a") as f:
            f.write(f"\n`{command}` — {started:%Y-%m-%d %H:%M} UTC; {host}\n\n{text}\n\n{notes}\n")


if __name__ == "__main__":
    main()
