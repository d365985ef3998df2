"""loadgen: load generation and performance analysis for NVIDIA Triton Inference Server."""

__version__ = "0.1.0"

import os  # noqa: E402

# Before anything imports grpc: its C core would log each failed TLS handshake on stderr (INFO),
# around the one-line error the user gets.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from loadgen.config import MeasurementSettings, SweepSettings  # noqa: E402
from loadgen.histogram import LatencyHistogram  # noqa: E402
from loadgen.ranges import parse_levels  # noqa: E402
from loadgen.results import ModelStats, RunInfo, RunStatus, StepResult, WindowResult  # noqa: E402

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
