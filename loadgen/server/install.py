"""Where the Triton server inside NVIDIA's PyTriton wheel lives, and what it needs to run.

The wheel bundles a CPU build of tritonserver 2.51 and its Python backend, so a
real server can be had with ``pip install 'loadgen[server]'`` instead of Docker.
The binary is not usable as-is: the backend stub must sit beside the backend
library, the bundled shared libraries must be on LD_LIBRARY_PATH and the stub
must find *our* interpreter's packages. This module hides those details.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from loadgen.errors import EmbeddedServerError, ServerNotInstalled


@dataclass(frozen=True)
class Install:
    binary: Path
    backend_lib: Path
    backend_utils: Path
    stub: Path
    libs: Path

    def make_backend_dir(self, under: Path) -> Path:
        """A backend directory in ``under`` (a fresh temp dir) for --backend-directory."""
        # The Python backend looks for its stub next to libtriton_python.so, and the wheel
        # keeps the stubs elsewhere (one per Python version), hence a private copy.
        backend_dir = under / "backends"
        python_dir = backend_dir / "python"
        python_dir.mkdir(parents=True)
        for src in (self.backend_lib, self.backend_utils, self.stub):
            shutil.copy2(src, python_dir / src.name)
        return backend_dir

    def env(self) -> dict[str, str]:
        """Our environment, plus what the binary and its backend stubs need."""
        env = os.environ.copy()
        libs = str(self.libs)
        env["LD_LIBRARY_PATH"] = f"{env['LD_LIBRARY_PATH']}:{libs}" if env.get("LD_LIBRARY_PATH") else libs
        # The stub imports numpy & co. via the first python3 on PATH: make that ours (a venv's).
        bindir = os.path.dirname(sys.executable)
        env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}" if env.get("PATH") else bindir
        return env


def server_installed() -> bool:
    """Cheap check (no import of pytriton) for skipping tests or hiding CLI commands."""
    try:
        locate_install()
    except EmbeddedServerError:
        return False
    return True


def locate_install() -> Install:
    """The wheel's files; raises ServerNotInstalled saying what is missing."""
    # find_spec, not import: importing pytriton pulls in numpy/zmq and is slow.
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerNotInstalled()
    pkg = Path(next(iter(spec.submodule_search_locations)))
    ts = pkg / "tritonserver"
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    inst = Install(
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
    # loadgen/server/install.py -> repository root (== Path(loadgen.__file__).parents[1]).
    bundled = Path(__file__).resolve().parents[2] / "model_repository"
    if bundled.is_dir():
        return bundled
    raise EmbeddedServerError(
        f"no model repository: neither {cwd_repo} nor {bundled} exists; pass one with --model-repository"
    )
