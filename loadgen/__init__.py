"""loadgen: load generation and performance analysis for NVIDIA Triton Inference Server."""

__version__ = "0.1.0"

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
