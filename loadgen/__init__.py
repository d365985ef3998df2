"""loadgen: load generation and performance analysis for NVIDIA Triton Inference Server."""

__version__ = "0.1.0"

import os  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

# Before anything imports grpc: its C core would log each failed TLS handshake on stderr (INFO),
# around the one-line error the user gets.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

if TYPE_CHECKING:
    from loadgen.config import MeasurementSettings, SweepSettings, parse_levels
    from loadgen.histogram import LatencyHistogram
    from loadgen.results import ModelStats, RunInfo, RunStatus, StepResult, WindowResult

_EXPORTS = {
    "LatencyHistogram": "loadgen.histogram",
    "MeasurementSettings": "loadgen.config",
    "ModelStats": "loadgen.results",
    "RunInfo": "loadgen.results",
    "RunStatus": "loadgen.results",
    "StepResult": "loadgen.results",
    "SweepSettings": "loadgen.config",
    "WindowResult": "loadgen.results",
    "parse_levels": "loadgen.config",
}
"""Public names, imported on first use: ``import loadgen.config`` must not load results or numpy."""

__all__ = [
    "LatencyHistogram",
    "MeasurementSettings",
    "ModelStats",
    "RunInfo",
    "RunStatus",
    "StepResult",
    "SweepSettings",
    "WindowResult",
    "__version__",
    "parse_levels",
]


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'loadgen' has no attribute {name!r}")
