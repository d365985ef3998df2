"""Run configuration: one frozen object flows CLI -> engine -> storage -> report."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from loadgen.errors import ConfigError
from loadgen.results import StepResult

REQUEST_TIMEOUT_S = 30.0
"""Default ``--request-timeout``: a request unanswered this long fails with DEADLINE_EXCEEDED."""
GRPC_CLIENTS = ("h2", "aio")
"""``--grpc-client`` choices; see :func:`loadgen.transports.make_transport`."""

if TYPE_CHECKING:  # loadgen.tls imports ConfigError from here
    from loadgen.tls import TlsSettings

Scenario = Literal["concurrency", "request_rate"]
Distribution = Literal["constant", "poisson"]
Protocol = Literal["grpc", "http"]

DEFAULT_GRPC_URL = "localhost:8001"
DEFAULT_HTTP_URL = "localhost:8000"
DEFAULT_METRICS_PORT = 8002


def default_metrics_url(server_url: str) -> str:
    """Triton's metrics endpoint on the same host as ``server_url`` (port 8002)."""
    host = urlsplit(server_url if "//" in server_url else f"//{server_url}").hostname or "localhost"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{DEFAULT_METRICS_PORT}/metrics"


_LIMIT = re.compile(
    r"^(?:p(?P<p>\d+(?:\.\d+)?)\s*=\s*)?(?P<v>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>us|ms|s)?$", re.I
)
_UNIT_US = {"us": 1.0, "ms": 1e3, "s": 1e6}


@dataclass(frozen=True)
class LatencyLimit:
    """``pNN=X``: the NN-th latency percentile must stay at or under ``limit_us``."""

    percentile: float
    limit_us: float

    def __post_init__(self) -> None:
        if not 0 < self.percentile <= 100:
            raise ConfigError(f"latency limit percentile must be within (0, 100], got p{self.percentile:g}")
        if not (self.limit_us > 0 and math.isfinite(self.limit_us)):
            raise ConfigError("a latency limit must be a positive time")

    def met_by(self, step: StepResult) -> bool:
        """Read from the step's histogram, so any percentile works."""
        if step.request_count == 0:
            return False
        return step.histogram.percentile_us(self.percentile) <= self.limit_us

    def __str__(self) -> str:
        return f"p{self.percentile:g} <= {self.limit_us / 1000:g} ms"


def parse_latency_limit(text: str, option: str = "--latency-limit") -> LatencyLimit:
    """``p99=50ms``, ``p95=0.2s``, ``p99.9=800us`` or ``50ms`` (meaning p99); a bare number is ms."""
    match = _LIMIT.match(text.strip())
    if match is None:
        raise ConfigError(f"bad {option} {text!r}: expected like p99=50ms, p95=0.2s or 50ms")
    unit = (match["unit"] or "ms").lower()
    return LatencyLimit(float(match["p"] or 99), float(match["v"]) * _UNIT_US[unit])


@dataclass(frozen=True)
class MeasurementSettings:
    """How one step is measured (perf_analyzer's names and defaults where it has them)."""

    measurement_interval_ms: int = 5000
    """Length of one measurement window (trial)."""
    warmup_ms: int = 1000
    """Load applied before the first window; not measured."""
    stability_percentage: float = 10.0
    """The last 3 windows' throughput and mean latency must lie within this % of their mean."""
    max_trials: int = 10
    """Windows measured at most before the step is stored as unstable."""
    metrics_interval_ms: int = 1000
    """Period of Prometheus scrapes of the server's metrics endpoint during a step."""

    def __post_init__(self) -> None:
        if self.measurement_interval_ms < 50:
            raise ConfigError("--measurement-interval must be at least 50 ms")
        if self.warmup_ms < 0:
            raise ConfigError("--warmup must be >= 0 ms")
        if not 0 < self.stability_percentage <= 100:
            raise ConfigError("--stability-percentage must be within (0, 100]")
        if self.max_trials < 1:
            raise ConfigError("--max-trials must be >= 1")
        if self.metrics_interval_ms < 50:
            raise ConfigError("--metrics-interval must be at least 50 ms")


@dataclass(frozen=True)
class SweepSettings:
    """Everything that defines a sweep; stored whole with the run."""

    model: str
    levels: tuple[float, ...]
    """Concurrency levels (integers) or, for ``request_rate``, target rates in requests/s."""
    url: str = DEFAULT_GRPC_URL
    protocol: Protocol = "grpc"
    grpc_client: str = "h2"
    """``--grpc-client``: ``h2`` (loadgen's lean HTTP/2 client) or ``aio`` (grpc.aio)."""
    tls: TlsSettings | None = None
    """``--ssl`` options (file paths only, never contents); None: plain connections."""
    scenario: Scenario = "concurrency"
    model_version: str = ""
    metrics_url: str | None = None
    """None: derived from ``url`` (same host, port 8002). Empty string: no scraping."""
    batch_size: int = 1
    input_data: str = "random"
    """``random`` (seeded), ``zero``, or a perf_analyzer JSON / ``.npy`` / ``.npz`` file."""
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """``--shape``: sizes of variable input dimensions (without the batch dimension)."""
    seed: int = 0
    measurement: MeasurementSettings = field(default_factory=MeasurementSettings)
    labels: dict[str, str] = field(default_factory=dict)
    distribution: Distribution = "constant"
    """Open loop: gaps between sends, constant or Poisson (seeded by ``seed``)."""
    max_in_flight: int = 1024
    """Open loop: requests beyond this many in flight are refused and counted."""
    request_intervals_us: tuple[float, ...] = ()
    """Open loop: a replayed schedule (microseconds between sends), looped; one step."""
    ramp_from: float | None = None
    """Open loop: the single step's rate ramps linearly from this to ``levels[0]`` over ``ramp_s``."""
    ramp_s: float = 0.0
    latency_limit: LatencyLimit | None = None
    """``--latency-limit pNN=X``: stop at the first step that misses it, or with ``search`` ..."""
    search: bool = False
    """... find the highest load that meets it by bracketing and bisection."""
    validate: bool = False
    """``--validate``: compare every answer with a reference (taken at concurrency 1, or the
    input file's ``validation_data``); see :mod:`loadgen.validation`."""
    tolerances: dict[str, tuple[float, float]] = field(default_factory=dict)
    """``--tolerance``: (rtol, atol) per float datatype, over the defaults."""
    workers: int | None = None
    """``--workers``: processes that share each step's load; None: chosen from the cores and the
    heaviest level (:func:`loadgen.engine.workers.default_workers`); 1 runs in-process."""
    request_timeout_s: float = REQUEST_TIMEOUT_S
    """``--request-timeout``: a request unanswered this long fails as DEADLINE_EXCEEDED; 0: never."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("a model name is required (-m MODEL)")
        if not self.levels:
            raise ConfigError("the sweep has no load levels")
        if self.scenario not in ("concurrency", "request_rate"):
            raise ConfigError(f"scenario must be concurrency or request_rate, got {self.scenario!r}")
        if self.scenario == "concurrency" and any(level < 1 or level != int(level) for level in self.levels):
            raise ConfigError("concurrency levels must be whole numbers >= 1")
        if self.scenario == "request_rate" and any(level <= 0 for level in self.levels):
            raise ConfigError("request rates must be > 0")
        if self.distribution not in ("constant", "poisson"):
            raise ConfigError(f"--distribution must be constant or poisson, got {self.distribution!r}")
        if self.ramp_from is not None and (self.scenario != "request_rate" or len(self.levels) != 1):
            raise ConfigError("a ramp is one open-loop step: give it alone, as --ramp FROM:TO:SECONDS")
        if self.search and self.latency_limit is None:
            raise ConfigError("--search needs --latency-limit pNN=X (e.g. p99=50ms)")
        if self.search and self.request_intervals_us:
            raise ConfigError("--search needs --concurrency or --request-rate, not --request-intervals")
        if self.grpc_client not in GRPC_CLIENTS:
            raise ConfigError(f"--grpc-client must be {' or '.join(GRPC_CLIENTS)}, got {self.grpc_client!r}")
        if self.workers is not None and not 1 <= self.workers <= 256:
            raise ConfigError("--workers must be within 1..256")
        if not (self.request_timeout_s >= 0 and math.isfinite(self.request_timeout_s)):
            raise ConfigError("--request-timeout must be a number of seconds >= 0 (0: no deadline)")
        if self.max_in_flight < 1:
            raise ConfigError("--max-in-flight must be >= 1")
        if self.batch_size < 1:
            raise ConfigError("--batch-size must be >= 1")
        if self.protocol not in ("grpc", "http"):
            raise ConfigError(f"protocol must be 'grpc' or 'http', got {self.protocol!r}")
        if self.input_data not in ("random", "zero") and not Path(self.input_data).is_file():
            raise ConfigError(
                f"--input-data must be random, zero or a data file; {self.input_data!r} is none"
            )

    @property
    def resolved_metrics_url(self) -> str | None:
        if self.metrics_url is None:
            return default_metrics_url(self.url)
        return self.metrics_url or None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["levels"] = list(self.levels)
        data["request_intervals_us"] = list(self.request_intervals_us)
        if self.latency_limit is not None:
            data["latency_limit"] = {
                "percentile": self.latency_limit.percentile,
                "limit_us": self.latency_limit.limit_us,
            }
        data["metrics_url"] = self.resolved_metrics_url
        return data
