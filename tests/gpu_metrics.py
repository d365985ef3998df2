"""A GPU Triton's metrics page without a GPU: the embedded (CPU) Triton's live page with the GPU
families of a real GPU server's page appended (tests/unit/data/triton_gpu_t4.prom, its source in
its first lines), so scraping, storage, report plots and the Grafana GPU panels meet real
``nv_gpu_*`` series with their ``gpu_uuid`` labels."""

from __future__ import annotations

import contextlib
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CAPTURE = Path(__file__).parent / "unit" / "data" / "triton_gpu_t4.prom"
GPU_UUID = "GPU-8331ed5e-e44e-72c7-fba5-ed5d48487989"
GPU_FAMILIES = (
    "nv_gpu_utilization",
    "nv_gpu_memory_total_bytes",
    "nv_gpu_memory_used_bytes",
    "nv_gpu_power_usage",
    "nv_gpu_power_limit",
    "nv_energy_consumption",
)


def gpu_lines() -> str:
    """The capture's GPU families: their HELP, TYPE and samples, as captured."""
    kept = []
    for line in CAPTURE.read_text().splitlines():
        words = line.split()
        if not words:
            continue
        name = words[2] if line.startswith(("# HELP ", "# TYPE ")) else line.split("{")[0].split()[0]
        if name in GPU_FAMILIES:
            kept.append(line)
    return "\n".join(kept) + "\n"


@contextlib.contextmanager
def gpu_triton_metrics(upstream: str) -> Iterator[str]:
    """A loopback ``/metrics`` URL answering ``upstream``'s page plus the GPU families; stops by itself."""
    gpu = gpu_lines().encode()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server spelling
            with opener.open(upstream, timeout=5) as answer:
                body = answer.read() + gpu
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
