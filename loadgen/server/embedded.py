"""EmbeddedServer: one tritonserver child process, from start to an orderly stop.

The child runs in a session of its own, so this module also makes sure it does not
outlive us (see cleanup.py); where the binary is and what it needs are in install.py.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from loadgen.errors import EmbeddedServerError
from loadgen.server.cleanup import BackendStubs, register_live, unregister_live
from loadgen.server.install import Install, default_model_repository, locate_install
from loadgen.server.ports import ServerPorts, check_ports, hostport
from loadgen.server.triton_log import error_lines

_POLL_INTERVAL_S = 0.1

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
        self._stubs = BackendStubs()

    # -- addresses ---------------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"http://{hostport(self.host, self.ports.http)}"

    @property
    def grpc_url(self) -> str:
        return hostport(self.host, self.ports.grpc)

    @property
    def metrics_url(self) -> str:
        return f"http://{hostport(self.host, self.ports.metrics)}/metrics"

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
        install = locate_install()
        self._check_repository()
        check_ports(self.ports)
        self._returncode = None
        self._keep_log = False
        self._tmpdir = Path(tempfile.mkdtemp(prefix="loadgen-tritonserver-"))
        try:
            backend_dir = install.make_backend_dir(self._tmpdir)
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
                    self._stubs.find(self._tmpdir)
                    self._killpg(proc)
                    proc.wait()
            self._stubs.reap(self._tmpdir)
            self._returncode = proc.returncode
            self._proc = None
            unregister_live(self)
        self._cleanup()
        return self._returncode

    def kill(self) -> None:
        """SIGKILL the server and its backend stubs at once, as a crash would."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self._stubs.find(self._tmpdir)
        self._killpg(proc)
        proc.wait()
        self._stubs.reap(self._tmpdir)

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

    def _spawn(self, install: Install, backend_dir: Path) -> None:
        # --flag=value form: one argv word per setting, so `pgrep -f grpc-port=8001` finds us.
        cmd = [
            str(install.binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_dir}",
            f"--http-port={self.ports.http}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}",
            # this machine only unless told: Triton's own default is every interface
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--metrics-address={self.host}",
            f"--log-verbose={self.log_verbose}",
            *self._trace_args(),
            *self.extra_args,
        ]
        log_fd = self._open_log()
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                env=install.env(),
                start_new_session=True,
            )
        except OSError as exc:
            raise EmbeddedServerError(f"cannot run {install.binary}: {exc}") from exc
        finally:
            os.close(log_fd)  # the child has its own copy
        register_live(self)

    def _trace_args(self) -> list[str]:
        """A trace file in the server's temp dir, tracing off: ``--trace-rate`` turns it on per model
        (Triton cannot be given a trace file over the network). None if the caller set tracing up."""
        if self._tmpdir is None or any(
            a.startswith(("--trace-config", "--trace-file")) for a in self.extra_args
        ):
            return []
        return [f"--trace-config=triton,file={self._tmpdir / 'trace.json'}", "--trace-config=level=OFF"]

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
                self._stubs.find(self._tmpdir)  # learn the stubs' shm regions while they are alive
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

    def _cleanup(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        clean_exit = self._returncode == 0 and not self._keep_log
        if self._user_log is None and self._log_path is not None and clean_exit:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
