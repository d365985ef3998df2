"""Run the Triton server that ships inside NVIDIA's PyTriton wheel as a child process.

The wheel bundles a CPU build of tritonserver 2.51 and its Python backend, so a
real server can be had with ``pip install 'loadgen[server]'`` instead of Docker.
The binary is not usable as-is: the backend stub must sit beside the backend
library, the bundled shared libraries must be on LD_LIBRARY_PATH and the stub
must find *our* interpreter's packages. This module hides those details.

Deliberately stdlib-only (no tritonclient): it must work, and fail helpfully,
before any client code is involved.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, BinaryIO, TextIO

from loadgen.errors import EmbeddedServerError, ServerNotInstalled

_POLL_INTERVAL_S = 0.1
_MAX_ERROR_LINES = 5

# Proxies from the environment must never see loopback health checks.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def grpc_tls_args(cert: Path, key: Path, client_ca: Path | None = None) -> list[str]:
    """Triton's flags for gRPC over TLS with this certificate and key; with ``client_ca``, mutual
    TLS: clients must show a certificate it signed. (Triton 2.51 has no HTTPS of its own.)

    Raises EmbeddedServerError naming a file that cannot be read."""
    for what, path in (("certificate", cert), ("key", key), ("client CA", client_ca)):
        if path is not None and not path.is_file():
            raise EmbeddedServerError(f"TLS {what} {str(path)!r}: no such file")
    args = ["--grpc-use-ssl=true", f"--grpc-server-cert={cert}", f"--grpc-server-key={key}"]
    if client_ca is not None:
        args += [f"--grpc-root-cert={client_ca}", "--grpc-use-ssl-mutual=true"]
    return args


@dataclass(frozen=True)
class ServerPorts:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    @classmethod
    def free(cls) -> ServerPorts:
        """Ports the OS says are free now, so parallel servers (tests) do not collide."""
        socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(3)]
        try:
            for s in socks:
                s.bind(("0.0.0.0", 0))
            http, grpc, metrics = (int(s.getsockname()[1]) for s in socks)
        finally:
            for s in socks:
                s.close()
        return cls(http=http, grpc=grpc, metrics=metrics)

    def labelled(self) -> list[tuple[int, str, str]]:
        """(port, protocol label, CLI flag) triples, for checks and messages."""
        return [
            (self.http, "HTTP", "--http-port"),
            (self.grpc, "gRPC", "--grpc-port"),
            (self.metrics, "metrics", "--metrics-port"),
        ]


@dataclass(frozen=True)
class _Install:
    binary: Path
    backend_lib: Path
    backend_utils: Path
    stub: Path
    libs: Path


def server_installed() -> bool:
    """Cheap check (no import of pytriton) for skipping tests or hiding CLI commands."""
    try:
        _locate_install()
    except EmbeddedServerError:
        return False
    return True


def _locate_install() -> _Install:
    # find_spec, not import: importing pytriton pulls in numpy/zmq and is slow.
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerNotInstalled()
    pkg = Path(next(iter(spec.submodule_search_locations)))
    ts = pkg / "tritonserver"
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    inst = _Install(
        binary=ts / "bin" / "tritonserver",
        backend_lib=ts / "backends" / "python" / "libtriton_python.so",
        backend_utils=ts / "backends" / "python" / "triton_python_backend_utils.py",
        stub=ts / "python_backend_stubs" / minor / "triton_python_backend_stub",
        libs=pkg.parent / "nvidia_pytriton.libs",
    )
    if not inst.binary.is_file():
        raise ServerNotInstalled(f"nvidia-pytriton has no tritonserver binary at {inst.binary}")
    if not inst.stub.is_file():
        raise ServerNotInstalled(f"nvidia-pytriton has no Python backend stub for Python {minor}")
    for path in (inst.backend_lib, inst.backend_utils, inst.libs):
        if not path.exists():
            raise ServerNotInstalled(f"nvidia-pytriton is incomplete ({path} is missing)")
    return inst


def default_model_repository() -> Path:
    """Prefer the user's ./model_repository, fall back to the demo models in this checkout."""
    cwd_repo = Path.cwd() / "model_repository"
    if cwd_repo.is_dir():
        return cwd_repo
    # loadgen/server/embedded.py -> repository root (== Path(loadgen.__file__).parents[1]).
    bundled = Path(__file__).resolve().parents[2] / "model_repository"
    if bundled.is_dir():
        return bundled
    raise EmbeddedServerError(
        f"no model repository: neither {cwd_repo} nor {bundled} exists; pass one with --model-repository"
    )


def _port_in_use(port: int) -> bool:
    """Bind-test like the server will (SO_REUSEADDR, so TIME_WAIT leftovers do not count)."""
    for host in ("0.0.0.0", "127.0.0.1"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                return True
    return False


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _http(url: str, *, data: bytes | None = None, timeout_s: float = 2.0) -> bytes | None:
    """Body of a 200 answer, else None: callers poll, so every failure just means 'not yet'."""
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with _OPENER.open(req, timeout=timeout_s) as resp:
            body: bytes = resp.read()
            return body if resp.status == 200 else None
    except urllib.error.HTTPError as exc:
        exc.close()  # holds the socket; unclosed it is a ResourceWarning
        return None
    except (OSError, http.client.HTTPException):
        return None


# Triton's own log prefix, e.g. 'E1128 16:57:15.964718 3733 backend_model.cc:692] "msg"'.
_LOG_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ [^\]]+\] ?")
_ERROR_WORDS = re.compile(r"error|failed|unavailable", re.IGNORECASE)
# Printed on every CPU-only start; never the reason a start failed.
_NOISE = re.compile(r"CudaDriverHelper|NVML|DCGM|CUDA driver|pinned memory|cuda memory pool", re.IGNORECASE)


def _normalise(line: str) -> str:
    line = _LOG_PREFIX.sub("", line.strip())
    if line.startswith("|"):  # a row of the model status table
        line = " ".join(cell.strip() for cell in line.strip("|").split("|") if cell.strip())
    if len(line) >= 2 and line[0] == line[-1] == '"':
        line = line[1:-1]
    # Multi-line messages (Python tracebacks) are logged with escaped newlines: keep line one.
    line = line.split("\\n", 1)[0].replace('\\"', '"').strip()
    return line[:300]


def error_lines(log_text: str, limit: int = _MAX_ERROR_LINES) -> list[str]:
    """The few log lines that explain a failure, without Triton's repetitions of them.

    Triton reports one model error up to five times (stub, instance, lifecycle, status
    table, ...); lines ending in the same text are collapsed to the most telling one.
    """
    groups: dict[str, tuple[int, str]] = {}
    for raw in log_text.splitlines():
        if raw.startswith("+") or not _ERROR_WORDS.search(raw) or _NOISE.search(raw):
            continue
        line = _normalise(raw)
        if not line or not _ERROR_WORDS.search(line):
            continue
        key = line[-40:].lower()
        score = 2 if "failed to load '" in line else 1 if "UNAVAILABLE" in line else 0
        if key not in groups or score > groups[key][0]:
            groups[key] = (score, line)
    kept = [line for _, line in groups.values()]
    # "failed to load 'x'" says nothing that "failed to load 'x' version 1: why" does not.
    kept = [a for a in kept if not any(a != b and a in b for b in kept)]
    return kept[:limit]


_SHM_PREFIX = "triton_python_backend_shm_region_"


def _processes_started_from(directory: Path) -> dict[int, list[str]]:
    """argv of processes whose executable lies under directory (Linux /proc; else none).

    Our backend directory is a fresh temp dir, so this can only find our own stubs,
    unlike a process-group kill after the group leader's pid may have been reused.
    """
    prefix = f"{directory}{os.sep}"
    found: dict[int, list[str]] = {}
    with contextlib.suppress(OSError), os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(os.path.join(entry.path, "cmdline"), "rb") as f:
                    raw = f.read()
            except OSError:
                continue
            argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
            if argv and argv[0].startswith(prefix):
                found[int(entry.name)] = argv
    return found


_LIVE: set[EmbeddedServer] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_leftovers() -> None:
    # The server runs in its own session, so neither Ctrl-C nor our exit reaches it.
    with _LIVE_LOCK:
        leftovers = list(_LIVE)
    for server in leftovers:
        with contextlib.suppress(Exception):
            server.stop(timeout_s=10.0)


class EmbeddedServer:
    """One tritonserver child process serving a model repository on the given ports.

    The child gets its own process group, so a Ctrl-C in the terminal reaches only
    us and we can shut Triton down in order (SIGTERM lets it unload models and stop
    the Python backend stubs, which a blunt group-wide signal would orphan).
    """

    def __init__(
        self,
        model_repository: Path | str | None = None,
        ports: ServerPorts = ServerPorts(),  # noqa: B008 - frozen, so a shared default is safe
        *,
        log_file: Path | str | None = None,
        log_verbose: int = 0,
        extra_args: Sequence[str] = (),
        startup_timeout_s: float = 120.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.model_repository = (
            Path(model_repository).expanduser().absolute()
            if model_repository is not None
            else default_model_repository()
        )
        self.ports = ports
        self.host = host
        self.log_verbose = log_verbose
        self.extra_args = tuple(extra_args)
        self.startup_timeout_s = startup_timeout_s
        self._user_log = Path(log_file).expanduser().absolute() if log_file is not None else None
        self._log_path: Path | None = None
        self._log_offset = 0
        self._keep_log = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: Path | None = None
        self._returncode: int | None = None
        self._shm_regions: set[str] = set()

    # -- addresses ---------------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"http://{_hostport(self.host, self.ports.http)}"

    @property
    def grpc_url(self) -> str:
        return _hostport(self.host, self.ports.grpc)

    @property
    def metrics_url(self) -> str:
        return f"http://{_hostport(self.host, self.ports.metrics)}/metrics"

    # -- state -------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        """Where this run logs; a temporary log is deleted after a clean stop, kept otherwise."""
        return self._log_path

    def returncode(self) -> int | None:
        """Exit status once the process has exited (negative: killed by that signal)."""
        if self._proc is not None:
            return self._proc.poll()
        return self._returncode

    def log_text(self) -> str:
        """This run's part of the log (a user log file is appended to, not truncated)."""
        if self._log_path is None:
            return ""
        try:
            with open(self._log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def list_models(self) -> list[str]:
        """Names in the repository index, sorted; empty if the server does not answer."""
        body = _http(f"{self.http_url}/v2/repository/index", data=b"{}")
        if body is None:
            return []
        try:
            entries = json.loads(body)
        except ValueError:
            return []
        return sorted({str(e["name"]) for e in entries if isinstance(e, dict) and "name" in e})

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self.running:
            raise EmbeddedServerError(f"tritonserver is already running (pid {self.pid})")
        if self._proc is not None:
            self.stop()  # reap a previous run and drop its temp dir before reusing the instance
        install = _locate_install()
        self._check_repository()
        self._check_ports()
        self._returncode = None
        self._keep_log = False
        self._tmpdir = Path(tempfile.mkdtemp(prefix="loadgen-tritonserver-"))
        try:
            backend_dir = self._make_backend_dir(install)
            self._spawn(install, backend_dir)
            self._wait_ready()
        except BaseException:
            # Including KeyboardInterrupt: a half-started server in its own session would outlive us.
            self.stop()
            raise

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """Graceful SIGTERM, SIGKILL after timeout_s; safe to call any number of times."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is not None:
                self._keep_log = True  # it died by itself: its log is the only clue why
            else:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    self._keep_log = True
                    self._find_stubs()
                    self._killpg(proc)
                    proc.wait()
            self._reap_stubs()
            self._returncode = proc.returncode
            self._proc = None
            with _LIVE_LOCK:
                _LIVE.discard(self)
        self._cleanup()
        return self._returncode

    def kill(self) -> None:
        """SIGKILL the server and its backend stubs at once, as a crash would."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self._find_stubs()
        self._killpg(proc)
        proc.wait()
        self._reap_stubs()

    def wait(self) -> int:
        """Block until the server exits by itself (or is stopped from another thread)."""
        proc = self._proc
        if proc is None:
            if self._returncode is not None:
                return self._returncode
            raise EmbeddedServerError("tritonserver was not started")
        return proc.wait()

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"EmbeddedServer({str(self.model_repository)!r}, {self.ports}, {state})"

    # -- internals ---------------------------------------------------------------------------------
    def _check_repository(self) -> None:
        repo = self.model_repository
        if not repo.is_dir():
            raise EmbeddedServerError(f"model repository not found: {repo} is not a directory")
        if not any(p.is_dir() for p in repo.iterdir()):
            raise EmbeddedServerError(f"model repository {repo} contains no model directories")

    def _check_ports(self) -> None:
        seen: dict[int, str] = {}
        for port, label, flag in self.ports.labelled():
            if not 0 < port < 65536:
                raise EmbeddedServerError(f"{label} port {port} is out of range: pick another with {flag}")
            if port in seen:
                raise EmbeddedServerError(
                    f"{label} and {seen[port]} ports are both {port}: pick another with {flag}"
                )
            seen[port] = label
            if _port_in_use(port):
                raise EmbeddedServerError(
                    f"port {port} ({label}) is already in use: stop the other server or pick another "
                    f"with {flag}"
                )

    def _make_backend_dir(self, install: _Install) -> Path:
        # The Python backend looks for its stub next to libtriton_python.so, and the wheel
        # keeps the stubs elsewhere (one per Python version), hence a private copy.
        assert self._tmpdir is not None
        backend_dir = self._tmpdir / "backends"
        python_dir = backend_dir / "python"
        python_dir.mkdir(parents=True)
        for src in (install.backend_lib, install.backend_utils, install.stub):
            shutil.copy2(src, python_dir / src.name)
        return backend_dir

    def _env(self, install: _Install) -> dict[str, str]:
        env = os.environ.copy()
        libs = str(install.libs)
        env["LD_LIBRARY_PATH"] = f"{env['LD_LIBRARY_PATH']}:{libs}" if env.get("LD_LIBRARY_PATH") else libs
        # The stub imports numpy & co. via the first python3 on PATH: make that ours (a venv's).
        bindir = os.path.dirname(sys.executable)
        env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}" if env.get("PATH") else bindir
        return env

    def _open_log(self) -> int:
        if self._user_log is not None:
            self._user_log.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._user_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._log_path = self._user_log
            self._log_offset = os.fstat(fd).st_size
            return fd
        fd, name = tempfile.mkstemp(prefix="loadgen-tritonserver-", suffix=".log")
        self._log_path = Path(name)
        self._log_offset = 0
        return fd

    def _spawn(self, install: _Install, backend_dir: Path) -> None:
        # --flag=value form: one argv word per setting, so `pgrep -f grpc-port=8001` finds us.
        cmd = [
            str(install.binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_dir}",
            f"--http-port={self.ports.http}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}",
            f"--log-verbose={self.log_verbose}",
            *self.extra_args,
        ]
        log_fd = self._open_log()
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                env=self._env(install),
                start_new_session=True,
            )
        except OSError as exc:
            raise EmbeddedServerError(f"cannot run {install.binary}: {exc}") from exc
        finally:
            os.close(log_fd)  # the child has its own copy
        with _LIVE_LOCK:
            _LIVE.add(self)

    def _wait_ready(self) -> None:
        proc = self._proc
        assert proc is not None
        ready_url = f"{self.http_url}/v2/health/ready"
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if proc.poll() is not None:
                raise EmbeddedServerError(
                    self._failure(f"tritonserver exited with code {proc.returncode} before becoming ready")
                )
            if _http(ready_url, timeout_s=1.0) is not None:
                self._find_stubs()  # learn the stubs' shm regions while they are alive
                return
            if time.monotonic() >= deadline:
                message = self._failure(
                    f"tritonserver did not become ready within {self.startup_timeout_s:g} s"
                )
                self.stop()
                raise EmbeddedServerError(message)
            time.sleep(_POLL_INTERVAL_S)

    def _failure(self, what: str) -> str:
        self._keep_log = True
        lines = error_lines(self.log_text())
        why = f": {'; '.join(lines)}" if lines else ""
        return f"{what}{why} (log: {self._log_path})"

    @staticmethod
    def _killpg(proc: subprocess.Popen[bytes]) -> None:
        # Only while proc is unreaped: its pid, and so its group id, cannot have been reused.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except PermissionError:
            proc.kill()

    def _find_stubs(self) -> list[int]:
        """Pids of our backend stubs; also remembers their shm regions for _reap_stubs."""
        if self._tmpdir is None:
            return []
        stubs = _processes_started_from(self._tmpdir)
        for argv in stubs.values():
            self._shm_regions.update(a for a in argv if a.startswith(_SHM_PREFIX) and "/" not in a)
        return list(stubs)

    def _reap_stubs(self) -> None:
        # After a crash or SIGKILL nobody else removes these: stubs linger for a while and
        # their shared-memory regions (1 MiB+ each in /dev/shm) would leak for good.
        for pid in self._find_stubs():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for region in self._shm_regions:
            with contextlib.suppress(OSError):
                (Path("/dev/shm") / region).unlink()
        self._shm_regions.clear()

    def _cleanup(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        clean_exit = self._returncode == 0 and not self._keep_log
        if self._user_log is None and self._log_path is not None and clean_exit:
            with contextlib.suppress(OSError):
                self._log_path.unlink()


class _StopRequested(BaseException):
    """Raised from our SIGINT/SIGTERM handler; BaseException so that `except Exception` can't eat it."""


def serve_forever(server: EmbeddedServer, *, stream_log: bool = True, out: TextIO | None = None) -> int:
    """Serve until SIGINT/SIGTERM (clean stop, returns 0) or until the server dies on its own.

    Starts the server unless it is already running; startup failures raise
    EmbeddedServerError. A server that dies on its own yields its exit code, or 128+N if
    signal N killed it (the shell's convention). Signal handlers are only installed from
    the main thread; elsewhere the caller must stop the server.
    """
    out = out if out is not None else sys.stdout

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise _StopRequested(signum)

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        try:
            return _serve(server, stream_log, out)
        except _StopRequested:
            print("stopping tritonserver ...", file=sys.stderr, flush=True)
            server.stop()
            return 0
    except _StopRequested:  # a second signal while stopping: stop waiting for a graceful exit
        server.kill()
        server.stop()
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        server.stop()


def _serve(server: EmbeddedServer, stream_log: bool, out: TextIO) -> int:
    if not server.running:
        server.start()
    models = ", ".join(server.list_models()) or "none"
    print(
        f"ready: HTTP {server.http_url}  gRPC {server.grpc_url}  metrics {server.metrics_url}  "
        f"(models: {models})",
        file=out,
        flush=True,
    )
    log_path = server.log_path
    assert log_path is not None
    with open(log_path, "rb") as log:
        log.seek(0, os.SEEK_END)  # startup chatter stays in the file; the ready line sums it up
        while server.running:
            if stream_log:
                _copy_new(log, out)
            time.sleep(0.2)
        if stream_log:
            _copy_new(log, out)
    lines = error_lines(server.log_text())
    rc = server.stop()
    assert rc is not None
    why = f": {'; '.join(lines)}" if lines else ""
    print(
        f"tritonserver exited unexpectedly with code {rc}{why} (log: {log_path})", file=sys.stderr, flush=True
    )
    return 128 - rc if rc < 0 else rc


def _copy_new(log: BinaryIO, out: TextIO) -> None:
    chunk: bytes = log.read()
    if chunk:
        out.write(chunk.decode("utf-8", errors="replace"))
        out.flush()
