"""The embedded server against a real tritonserver: no mocks, ports picked at run time."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from loadgen.errors import EmbeddedServerError
from loadgen.server import EmbeddedServer, ServerPorts, serve_forever, server_installed
from loadgen.server.install import default_model_repository
from tests.repository import DEMO_MODELS

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        not server_installed(), reason="embedded Triton not installed: pip install 'loadgen[server]'"
    ),
]

REPO_ROOT = Path(__file__).resolve().parents[2]
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    with _NO_PROXY.open(urllib.request.Request(url, data=data), timeout=10) as resp:
        return int(resp.status), bytes(resp.read())


def _bindable(port: int) -> bool:
    """Could a new server listen here? (SO_REUSEADDR like Triton: TIME_WAIT leftovers don't count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _assert_ports_free(ports: ServerPorts) -> None:
    for port, label, _ in ports.labelled():
        assert _bindable(port), f"{label} port {port} still in use"


def _group_gone(pgid: int, within_s: float = 5.0) -> bool:
    """True once no process of the group is left (killed stubs are reaped by init, later)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _shm_regions_of_group(pgid: int) -> list[Path]:
    """The Python backend's shared-memory files held by the server's stubs."""
    regions = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            argv = (stat.parent / "cmdline").read_bytes().decode().split("\0")
        except (OSError, IndexError, ValueError):
            continue
        regions += [Path("/dev/shm", a) for a in argv if a.startswith("triton_python_backend_shm_region_")]
    return regions


def test_ready_and_lists_demo_models(triton: EmbeddedServer) -> None:
    assert triton.running and triton.pid is not None
    assert triton.http_url == f"http://127.0.0.1:{triton.ports.http}"
    assert triton.grpc_url == f"127.0.0.1:{triton.ports.grpc}"
    assert _get(f"{triton.http_url}/v2/health/ready")[0] == 200

    status, body = _get(f"{triton.http_url}/v2/repository/index", data=b"{}")
    assert status == 200
    index = json.loads(body)
    assert sorted(m["name"] for m in index) == DEMO_MODELS
    assert {m["state"] for m in index} == {"READY"}
    assert triton.list_models() == DEMO_MODELS


def test_metrics_endpoint_serves_triton_metrics(triton: EmbeddedServer) -> None:
    assert triton.metrics_url == f"http://127.0.0.1:{triton.ports.metrics}/metrics"
    status, body = _get(triton.metrics_url)
    assert status == 200
    assert any(line.startswith("nv_") for line in body.decode().splitlines())


@pytest.mark.parametrize("field", ["http", "grpc", "metrics"])
def test_refuses_a_port_in_use(field: str) -> None:
    label, flag = {
        "http": ("HTTP", "--http-port"),
        "grpc": ("gRPC", "--grpc-port"),
        "metrics": ("metrics", "--metrics-port"),
    }[field]
    free = ServerPorts.free()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = ServerPorts(**{**free.__dict__, field: taken})
        server = EmbeddedServer(ports=ports)
        with pytest.raises(EmbeddedServerError) as err:
            server.start()
    message = str(err.value)
    assert f"port {taken} ({label}) is already in use" in message
    assert flag in message
    assert not server.running and server.pid is None


def test_refuses_duplicate_ports() -> None:
    port = ServerPorts.free().http
    with pytest.raises(EmbeddedServerError, match=f"ports are both {port}"):
        EmbeddedServer(ports=ServerPorts(port, port, port + 1)).start()


def test_missing_model_repository(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-repo"
    with pytest.raises(EmbeddedServerError, match="model repository not found") as err:
        EmbeddedServer(missing, ServerPorts.free()).start()
    assert str(missing) in str(err.value)


def test_broken_model_error_is_quoted(tmp_path: Path) -> None:
    model = tmp_path / "repo" / "broken"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(
        textwrap.dedent("""\
            backend: "python"
            max_batch_size: 0
            input [ { name: "IN", data_type: TYPE_FP32, dims: [ 1 ] } ]
            output [ { name: "OUT", data_type: TYPE_FP32, dims: [ 1 ] } ]
        """)
    )
    (model / "1" / "model.py").write_text(
        textwrap.dedent("""\
            class TritonPythonModel:
                def initialize(self, args):
                    raise RuntimeError("weights are corrupt, refusing to load")
        """)
    )
    log = tmp_path / "broken.log"
    server = EmbeddedServer(tmp_path / "repo", ServerPorts.free(), log_file=log)
    with pytest.raises(EmbeddedServerError) as err:
        server.start()
    message = str(err.value)
    assert "exited with code 1" in message
    assert "failed to load 'broken'" in message
    assert "weights are corrupt, refusing to load" in message
    assert str(log) in message
    assert "\n" not in message
    assert "NVML" not in message and "CudaDriverHelper" not in message  # CPU-host noise is filtered
    assert not server.running
    _assert_ports_free(server.ports)


def test_stop_is_clean_and_frees_ports(small_triton: EmbeddedServer) -> None:
    pgid = small_triton.pid
    assert pgid is not None
    assert small_triton.stop() == 0
    assert not small_triton.running and small_triton.pid is None
    assert small_triton.stop() == 0  # idempotent
    assert small_triton.wait() == 0
    assert _group_gone(pgid), "backend stubs outlived the server"
    _assert_ports_free(small_triton.ports)
    assert small_triton.list_models() == []


def test_kill_is_a_crash_that_serve_forever_reports(small_triton: EmbeddedServer) -> None:
    pgid = small_triton.pid
    assert pgid is not None
    out = io.StringIO()
    result: list[int] = []
    # Off the main thread serve_forever installs no signal handlers: fine, we kill the server.
    watcher = threading.Thread(target=lambda: result.append(serve_forever(small_triton, out=out)))
    watcher.start()
    deadline = time.monotonic() + 30
    while not out.getvalue().startswith("ready:") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "(models: identity)" in out.getvalue()

    regions = _shm_regions_of_group(pgid)
    assert regions and all(r.exists() for r in regions)
    small_triton.kill()
    assert not small_triton.running
    assert not [r for r in regions if r.exists()], "kill() leaked /dev/shm regions"
    assert _group_gone(pgid), "kill() left backend stubs behind"
    watcher.join(timeout=30)
    assert result == [128 + signal.SIGKILL]
    assert small_triton.stop() == -signal.SIGKILL
    _assert_ports_free(small_triton.ports)


def test_serve_forever_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    ports = ServerPorts.free()
    repo = tmp_path / "repo"  # one small model: the whole demo repository takes seconds to load
    repo.mkdir()
    (repo / "identity").symlink_to(default_model_repository() / "identity")
    script = textwrap.dedent(f"""\
        import sys
        from loadgen.server import EmbeddedServer, ServerPorts, serve_forever
        server = EmbeddedServer({str(repo)!r}, ports=ServerPorts{(ports.http, ports.grpc, ports.metrics)!r},
                                log_file={str(tmp_path / "serve.log")!r})
        sys.exit(serve_forever(server))
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("ready: "), first
        assert f"gRPC 127.0.0.1:{ports.grpc}" in first
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopping tritonserver" in err
    _assert_ports_free(ports)
