"""``loadgen model add``: an ONNX file made a model repository entry, written whole or not at all.

The entry is assembled in a staging folder and renamed into place, so a server polling the
repository never sees half a model, and a refused or failed add leaves the repository as it was.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from loadgen.deploy import precision, tensorrt_plan
from loadgen.deploy.config_text import MODEL_FILES, DeployOptions, config_pbtxt
from loadgen.deploy.onnx_signature import OnnxSignature, read_signature
from loadgen.errors import ConfigError

RUNNER = Path(__file__).with_name("onnx_runner.py")
"""The Python backend's ``model.py`` for every ONNX model (it reads its tensors from the config)."""
VERSION = "1"


@dataclass(frozen=True)
class Deployed:
    folder: Path
    config_text: str
    signature: OnnxSignature
    files: tuple[Path, ...]

    @property
    def model_file(self) -> Path:
        return self.files[0]


def _staging(repository: Path, name: str) -> Path:
    """Beside the repository where it may write and the rename stays on one file system (not when
    the repository is a mount point, as a container's /models is), else inside it."""
    same_device = repository.parent.stat().st_dev == repository.stat().st_dev
    for where in (repository.parent, repository) if same_device else (repository,):
        with contextlib.suppress(OSError):
            return Path(tempfile.mkdtemp(prefix=f".loadgen-{name}-", dir=where))
    raise ConfigError(f"cannot write into {repository}")


def add_model(
    source: Path, repository: Path, options: DeployOptions, *, fp16: bool = False, replace: bool = False
) -> Deployed:
    """Write ``repository/NAME`` (config.pbtxt and version 1) from ``source``; refused in one line
    before anything is written where the graph, the options or the repository cannot work."""
    signature = read_signature(source)
    text = config_pbtxt(signature, options)
    if options.backend == "tensorrt":
        tensorrt_plan.check_available()
    if not repository.is_dir():
        raise ConfigError(f"{repository}: no such model repository folder")
    folder = repository / options.name
    if folder.exists() and not replace:
        raise ConfigError(f"{folder} exists: give --replace to write over it")
    staging = _staging(repository, options.name)
    try:
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the model from a server run as another user
        version = staging / VERSION
        version.mkdir()
        model_file = version / MODEL_FILES[options.backend]
        if options.backend == "tensorrt":
            tensorrt_plan.build_plan(source, model_file, signature, options.max_batch_size, fp16)
        elif fp16:
            precision.write_fp16(source, model_file)
        else:
            shutil.copyfile(source, model_file)
        files = [model_file]
        if options.backend == "python":
            files.append(Path(shutil.copyfile(RUNNER, version / "model.py")))
        (staging / "config.pbtxt").write_text(text)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except OSError as exc:
        raise ConfigError(f"cannot write {folder}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    placed = tuple(folder / f.relative_to(staging) for f in files)
    return Deployed(folder, text, signature, (*placed, folder / "config.pbtxt"))
