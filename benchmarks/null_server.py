"""The client's own ceiling: loadgen against C tools on a null server (issue 22, part 1).

    python benchmarks/null_server.py                         # C = 1, 16, 64; 2 rounds; HTTP and gRPC
    python benchmarks/null_server.py --levels 64 --rounds 3 --seconds 8

Needs Debian's nginx (``nginx-light``), ``wrk`` and ``h2load`` (``nghttp2-client``):
``apt-get install nginx-light wrk nghttp2-client``. The script starts everything it needs and
stops it: one nginx process (no master, one worker) pinned to the first CPU, answering

- HTTP/1.1: ``POST /v2/models/identity/infer`` with a fixed KServe v2 binary-tensor response
  (its JSON header, then the 64 bytes of an FP32 [1, 16] output), and the metadata routes loadgen
  asks first (health, server and model metadata, config, ``/stats``);
- HTTP/2 cleartext: every gRPC method loadgen calls, each a fixed length-prefixed protobuf
  message with a ``grpc-status: 0`` trailer (``ModelInfer`` answers a ``ModelInferResponse``).

Each client runs pinned to the second CPU, one at a time, the order flipping each round: loadgen
(``-i http``; gRPC with its lean HTTP/2 client; on asyncio's loop and on uvloop, and with
``--workers 2`` on uvloop, its worker processes sharing the same one core) against ``wrk``
(HTTP/1.1, one thread, C connections) and ``h2load`` (one thread, one connection, C streams, as
loadgen multiplexes).
Reported per tool and level, by one method for every tool: every 0.1 s the script reads the
client's CPU time (user+sys of its whole process tree, from ``/proc``) and the requests nginx
has answered; over the middle of the run (30% to 90% of the time requests were answered: start-up,
warm-up and the end left out) requests/s and client CPU per request, and the ratio loadgen / C
tool of both. Medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "identity"
SHAPE = [1, 16]
OUTPUT_BYTES = b"A" * 64  # FP32 [1, 16] of 0x41414141 (12.08): printable, so nginx can return it
SERVICE = "inference.GRPCInferenceService"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _grpc_frame(message: bytes) -> bytes:
    return struct.pack(">BI", 0, len(message)) + message


def grpc_answers() -> dict[str, bytes]:
    """Each gRPC method loadgen calls before and during a sweep, with its fixed answer."""
    from tritonclient.grpc import model_config_pb2 as mc
    from tritonclient.grpc import service_pb2 as pb

    tensor = {"data_type": mc.TYPE_FP32, "dims": [16]}
    config = mc.ModelConfig(
        name=MODEL,
        max_batch_size=64,
        input=[mc.ModelInput(name="INPUT0", **tensor)],
        output=[mc.ModelOutput(name="OUTPUT0", **tensor)],
    )
    meta = {"datatype": "FP32", "shape": [-1, 16]}
    answers = {
        "ServerLive": pb.ServerLiveResponse(live=True),
        "ServerReady": pb.ServerReadyResponse(ready=True),
        "ModelReady": pb.ModelReadyResponse(ready=True),
        "ServerMetadata": pb.ServerMetadataResponse(name="null", version="0"),
        "ModelMetadata": pb.ModelMetadataResponse(
            name=MODEL,
            versions=["1"],
            platform="null",
            inputs=[pb.ModelMetadataResponse.TensorMetadata(name="INPUT0", **meta)],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(name="OUTPUT0", **meta)],
        ),
        "ModelConfig": pb.ModelConfigResponse(config=config),
        "ModelStatistics": pb.ModelStatisticsResponse(
            model_stats=[pb.ModelStatistics(name=MODEL, version="1")]
        ),
        "ModelInfer": pb.ModelInferResponse(
            model_name=MODEL,
            model_version="1",
            outputs=[pb.ModelInferResponse.InferOutputTensor(name="OUTPUT0", datatype="FP32", shape=SHAPE)],
            raw_output_contents=[OUTPUT_BYTES],
        ),
    }
    return {name: _grpc_frame(message.SerializeToString()) for name, message in answers.items()}


def grpc_request() -> bytes:
    """What h2load posts: a ModelInferRequest of FP32 [1, 16], framed."""
    from tritonclient.grpc import service_pb2 as pb

    request = pb.ModelInferRequest(
        model_name=MODEL,
        inputs=[pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32", shape=SHAPE)],
        raw_input_contents=[b"\0" * 64],
    )
    return _grpc_frame(request.SerializeToString())


def http_routes() -> dict[str, tuple[str, dict[str, str]]]:
    """Path -> (body, extra headers) of the HTTP/1.1 null server; JSON with no ``$`` or ``'``."""
    tensor = {"data_type": "TYPE_FP32", "dims": [16]}
    meta = {"datatype": "FP32", "shape": [-1, 16]}
    header = json.dumps(
        {
            "model_name": MODEL,
            "model_version": "1",
            "outputs": [
                {
                    "name": "OUTPUT0",
                    "datatype": "FP32",
                    "shape": SHAPE,
                    "parameters": {"binary_data_size": 64},
                }
            ],
        },
        separators=(",", ":"),
    )
    stats = {"model_stats": [{"name": MODEL, "version": "1", "inference_count": 0, "execution_count": 0}]}
    return {
        "/v2/health/live": ("", {}),
        "/v2/health/ready": ("", {}),
        "/v2": (json.dumps({"name": "null", "version": "0", "extensions": []}), {}),
        f"/v2/models/{MODEL}": (
            json.dumps(
                {
                    "name": MODEL,
                    "versions": ["1"],
                    "platform": "null",
                    "inputs": [{"name": "INPUT0", **meta}],
                    "outputs": [{"name": "OUTPUT0", **meta}],
                }
            ),
            {},
        ),  # fmt: skip
        f"/v2/models/{MODEL}/ready": ("", {}),
        f"/v2/models/{MODEL}/config": (
            json.dumps(
                {
                    "name": MODEL,
                    "max_batch_size": 64,
                    "input": [{"name": "INPUT0", **tensor}],
                    "output": [{"name": "OUTPUT0", **tensor}],
                }
            ),
            {},
        ),  # fmt: skip
        f"/v2/models/{MODEL}/stats": (json.dumps(stats), {}),
        f"/v2/models/{MODEL}/infer": (
            header + OUTPUT_BYTES.decode(),
            {"Inference-Header-Content-Length": str(len(header))},
        ),
    }


def http_request() -> tuple[bytes, dict[str, str]]:
    """What wrk posts: a KServe v2 binary-tensor request of FP32 [1, 16]."""
    header = json.dumps(
        {
            "inputs": [
                {"name": "INPUT0", "datatype": "FP32", "shape": SHAPE, "parameters": {"binary_data_size": 64}}
            ]
        },
        separators=(",", ":"),
    ).encode()
    return header + b"\0" * 64, {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": "application/octet-stream",
    }


def nginx_conf(root: Path, http_port: int, grpc_port: int) -> str:
    locations = []
    for path, (body, headers) in http_routes().items():
        extra = "".join(f"      add_header {k} {v};\n" for k, v in headers.items())
        locations.append(
            f"    location = {path} {{\n      default_type application/json;\n{extra}"
            f"      return 200 '{body}';\n    }}\n"
        )
    return f"""daemon off;
master_process off;
worker_processes 1;
error_log {root}/error.log warn;
pid {root}/nginx.pid;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  http2_max_concurrent_streams 100000;
  http2_max_requests 100000000;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  server {{
    listen 127.0.0.1:{http_port} reuseport;
    location = /nginx_status {{ stub_status; }}
{"".join(locations)}  }}
  server {{
    listen 127.0.0.1:{grpc_port} http2;
    root {root}/grpc;
    location / {{
      default_type application/grpc;
      add_trailer grpc-status 0;
      error_page 405 =200 $uri;
    }}
  }}
}}
"""


@dataclass(frozen=True)
class NullServer:
    http_port: int
    grpc_port: int

    def requests(self) -> int:
        """Requests nginx has answered (both servers; stub_status's own count too)."""
        with _OPENER.open(f"http://127.0.0.1:{self.http_port}/nginx_status", timeout=5) as answer:
            text = answer.read().decode()
        return int(text.splitlines()[2].split()[2])


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def null_server(server_cpu: int, tmp: Path) -> Iterator[NullServer]:
    """nginx on ``server_cpu``, stopped however the benchmark ends."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        sys.exit("nginx not found: apt-get install nginx-light")
    for name, body in grpc_answers().items():
        path = tmp / "grpc" / SERVICE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    server = NullServer(free_port(), free_port())
    conf = tmp / "nginx.conf"
    conf.write_text(nginx_conf(tmp, server.http_port, server.grpc_port))
    proc = subprocess.Popen(
        ["taskset", "-c", str(server_cpu), nginx, "-c", str(conf), "-p", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                server.requests()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"nginx did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
                time.sleep(0.1)
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


@dataclass(frozen=True)
class Result:
    tool: str
    protocol: str
    level: int
    rate: float
    """Requests/s in the steady state."""
    cpu_us: float
    """Client CPU (user+sys) per request, microseconds."""
    variant: str = ""
    """loadgen's event loop and workers (``uvloop, 1 worker``)."""


TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """User+sys CPU seconds of ``pid`` and every process under it (loadgen's workers)."""
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        used[int(entry)] = (int(fields[11]) + int(fields[12])) * TICK_S
    tree, grew = {pid}, True
    while grew:
        more = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(used.get(p, 0.0) for p in tree)


@dataclass(frozen=True)
class Steady:
    """A client run's steady state, from samples taken every 0.1 s: its requests/s and its CPU
    per request, both over the same span (the middle of the run: start-up, warm-up and the end
    left out), by the same method for every tool."""

    rate: float
    cpu_us: float


def steady(samples: list[tuple[float, float, int]], skip: float = 0.3, keep_until: float = 0.9) -> Steady:
    """From ``(time, client CPU s, requests nginx answered)`` samples: the span between ``skip``
    and ``keep_until`` of the time during which requests were answered."""
    busy = [i for i in range(1, len(samples)) if samples[i][2] > samples[i - 1][2] + 1]
    if len(busy) < 5:
        raise RuntimeError("the client answered too few requests to measure")
    t0, t1 = samples[busy[0]][0], samples[busy[-1]][0]
    span = [x for x in samples if t0 + skip * (t1 - t0) <= x[0] <= t0 + keep_until * (t1 - t0)]
    (a_t, a_cpu, a_n), (b_t, b_cpu, b_n) = span[0], span[-1]
    served = b_n - a_n - len(span)  # less this sampler's own /nginx_status requests
    return Steady(served / (b_t - a_t), (b_cpu - a_cpu) / served * 1e6)


def run_client(
    cmd: list[str], server: NullServer, client_cpu: int, env: dict[str, str] | None = None
) -> tuple[str, Steady]:
    """Its output and steady state; the run must succeed."""
    samples: list[tuple[float, float, int]] = []
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            ["taskset", "-c", str(client_cpu), *cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=None if env is None else {**os.environ, **env},
        )
        while proc.poll() is None:
            samples.append((time.monotonic(), tree_cpu_s(proc.pid), server.requests()))
            time.sleep(0.1)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{text[-2000:]}")
    return text, steady(samples)


def run_loadgen(
    protocol: str,
    level: int,
    server: NullServer,
    args: argparse.Namespace,
    tmp: Path,
    loop: str = "uvloop",
    workers: int = 1,
) -> Result:
    db = tmp / f"lg-{protocol}-{level}-{time.monotonic_ns()}.db"
    url = f"127.0.0.1:{server.http_port if protocol == 'http' else server.grpc_port}"
    window_ms = int(args.seconds * 1000 / 3)
    cmd = [sys.executable, "-m", "loadgen", "sweep", "-m", MODEL, "-u", url, "-i", protocol]
    cmd += ["--concurrency", str(level), "-p", str(window_ms), "--warmup", "500", "-r", "3", "-s", "100"]
    cmd += ["--no-metrics", "-q", "--db", f"sqlite:///{db}", "--workers", str(workers)]
    _, seen = run_client(cmd, server, args.client_cpu, {"LOADGEN_EVENT_LOOP": loop})
    from loadgen.storage import RunStore

    with RunStore(f"sqlite:///{db}") as store:
        (run,) = store.list_runs()
        (step,) = store.steps(run.id)
    if step.error_count:
        sys.exit(f"loadgen {protocol} C={level}: {step.error_count} errors: {step.errors}")
    variant = f"{loop}, {workers} worker{'s' if workers > 1 else ''}"
    return Result("loadgen", protocol, level, seen.rate, seen.cpu_us, variant)


def run_wrk(level: int, server: NullServer, args: argparse.Namespace, tmp: Path) -> Result:
    body, headers = http_request()
    script = tmp / "post.lua"
    lua_body = "".join(f"\\{b:03d}" for b in body)
    lua_headers = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    script.write_text(f'wrk.method = "POST"\nwrk.body = "{lua_body}"\n{lua_headers}')
    url = f"http://127.0.0.1:{server.http_port}/v2/models/{MODEL}/infer"
    cmd = ["wrk", "-t1", f"-c{level}", f"-d{args.seconds:g}s", "-s", str(script), url]
    text, seen = run_client(cmd, server, args.client_cpu)
    match = re.search(r"Requests/sec:\s+([\d.]+)", text)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", text)
    if match is None or errors is not None:
        sys.exit(f"wrk C={level}: {text}")
    return Result("wrk", "http", level, seen.rate, seen.cpu_us)


def run_h2load(level: int, server: NullServer, args: argparse.Namespace, tmp: Path) -> Result:
    request = tmp / "request.bin"
    request.write_bytes(grpc_request())
    url = f"http://127.0.0.1:{server.grpc_port}/{SERVICE}/ModelInfer"
    cmd = ["h2load", "-t1", "-c1", f"-m{level}", f"-D{args.seconds:g}", "-d", str(request)]
    cmd += ["-H", "content-type: application/grpc", "-H", "te: trailers", url]
    text, seen = run_client(cmd, server, args.client_cpu)
    match = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
    failed = re.search(r"requests: .* (\d+) failed, .* (\d+) errored", text)
    if match is None or (failed is not None and (int(failed[1]) or int(failed[2]))):
        sys.exit(f"h2load C={level}: {text}")
    return Result("h2load", "grpc", level, seen.rate, seen.cpu_us)


def run_tool(
    tool: str, protocol: str, level: int, server: NullServer, args: argparse.Namespace, tmp: Path
) -> Result:
    if tool.startswith("loadgen"):  # loadgen:LOOP:WORKERS
        _, loop, workers = tool.split(":")
        return run_loadgen(protocol, level, server, args, tmp, loop, int(workers))
    return (run_wrk if tool == "wrk" else run_h2load)(level, server, args, tmp)


def table(results: list[Result], levels: list[int]) -> str:
    lines = [
        "| protocol | C | loadgen | loadgen (req/s) | C tool (req/s) | ratio | loadgen CPU/req (us) "
        "| C tool CPU/req (us) | CPU ratio | loadgen req/s per client core / C tool's |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    variants = list(dict.fromkeys(r.variant for r in results if r.tool == "loadgen"))
    for protocol, tool in (("http", "wrk"), ("grpc", "h2load")):
        for level in levels:
            theirs = [r for r in results if r.tool == tool and r.level == level]
            for variant in variants:
                ours = [
                    r
                    for r in results
                    if r.tool == "loadgen" and (r.protocol, r.level, r.variant) == (protocol, level, variant)
                ]
                if not ours or not theirs:
                    continue
                rate = statistics.median(r.rate for r in ours)
                c_rate = statistics.median(r.rate for r in theirs)
                cpu = statistics.median(r.cpu_us for r in ours)
                c_cpu = statistics.median(r.cpu_us for r in theirs)
                lines.append(
                    f"| {protocol} ({tool}) | {level} | {variant} | {rate:,.0f} | {c_rate:,.0f} "
                    f"| {rate / c_rate:.2f} | {cpu:.1f} | {c_cpu:.1f} | {cpu / c_cpu:.1f} "
                    f"| {c_cpu / cpu:.2f} |"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", default="1,16,64", help="concurrency levels (default 1,16,64)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, the order flipping each (default 2)")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per run (default 6)")
    parser.add_argument("--protocols", default="http,grpc", help="http, grpc or both (default both)")
    parser.add_argument(
        "--loops", default="asyncio,uvloop", help="loadgen's event loops (LOADGEN_EVENT_LOOP; default both)"
    )
    parser.add_argument("--workers", default="1,2", help="loadgen --workers values (default 1,2)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    args = parser.parse_args()
    for tool in ("wrk", "h2load", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install nginx-light wrk nghttp2-client")
    levels = [int(v) for v in args.levels.split(",")]
    protocols = args.protocols.split(",")
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="loadgen-null-") as name,
        null_server(args.server_cpu, Path(name)) as server,
    ):
        tmp = Path(name)
        for round_ in range(args.rounds):
            for protocol in protocols:
                for level in levels:
                    ours = [f"loadgen:{loop}:1" for loop in args.loops.split(",")]
                    ours += [
                        f"loadgen:{args.loops.split(',')[-1]}:{w}"
                        for w in args.workers.split(",")
                        if w != "1"
                    ]
                    tools = (*ours, "wrk" if protocol == "http" else "h2load")
                    for tool in tools if round_ % 2 == 0 else tools[::-1]:
                        result = run_tool(tool, protocol, level, server, args, tmp)
                        results.append(result)
                        said = f"{result.rate:,.0f} req/s, {result.cpu_us:.1f} us CPU/request"
                        who = f"{result.tool} ({result.variant})" if result.variant else result.tool
                        print(f"round {round_ + 1} {who} {protocol} C={level}: {said}", file=sys.stderr)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    pinned = f"server on CPU {args.server_cpu}, client on CPU {args.client_cpu}"
    print(f"{platform.node()}, {os.cpu_count()} CPUs, {stamp}; {pinned}")
    print(table(results, levels), end="")


if __name__ == "__main__":
    main()
