"""The settings of a sweep: frozen objects that flow front-end -> engine -> storage -> report.

Every rule about a single object lives here, in ``problems()``, and runs on construction,
so no settings object is ever invalid, however it was made. The rules that turn user
input into these objects (which load option was given, default URL per protocol, TLS
from the URL) live in :mod:`loadgen.config.build`, the one constructor front-ends use.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from loadgen.config.measurement import MeasurementSettings
from loadgen.config.request_rules import ray_rules, sequence_rules, shared_memory_rules, trace_rules
from loadgen.errors import SettingProblem, check, raise_problems
from loadgen.tls import GRPC_INSECURE, TlsSettings, url_scheme

REQUEST_TIMEOUT_S = 30.0
"""Default ``--request-timeout``: a request unanswered this long fails with DEADLINE_EXCEEDED."""
GRPC_CLIENTS = ("h2", "aio")
"""``--grpc-client`` choices; see :func:`loadgen.transports.make_transport`."""
PROTOCOLS = ("grpc", "http")
DISTRIBUTIONS = ("constant", "poisson")
PACINGS = ("auto", "timerfd", "spin")
"""``--pacing`` choices; see :mod:`loadgen.engine.pacing`."""
INPUT_KEYWORDS = ("random", "zero")
"""``--input-data`` values that are not files."""
MAX_WORKERS = 256

Scenario = Literal["concurrency", "request_rate"]
Distribution = Literal["constant", "poisson"]
Pacing = Literal["auto", "timerfd", "spin"]
Protocol = Literal["grpc", "http"]

DEFAULT_URLS: dict[str, str] = {"grpc": "localhost:8001", "http": "localhost:8000"}
"""The server address when none is given: Triton's default port of each protocol."""
DEFAULT_GRPC_URL = DEFAULT_URLS["grpc"]
DEFAULT_HTTP_URL = DEFAULT_URLS["http"]
DEFAULT_METRICS_PORT = 8002


def _address_problem(url: str, schemes: tuple[str, ...]) -> str | None:
    """What is wrong with a server or metrics address (scheme, port, credentials), starting with the
    address as shown (its credentials hidden); None if nothing."""
    try:
        parts = urlsplit(url if "//" in url else f"//{url}")
    except ValueError as exc:  # an unclosed [IPv6 literal
        return f"{url!r} is not an address: {exc}"
    if parts.username is not None or parts.password is not None:
        shown = url.replace(parts.netloc, "***@" + parts.netloc.rpartition("@")[2])
        return f"{shown!r} carries a user or password: give credentials with -H 'Authorization: ...'"
    if parts.scheme not in schemes:
        forms = " or ".join(f"{s}://" for s in schemes if s)
        return f"{url!r} has scheme {parts.scheme!r}: use {forms}"
    try:
        port = parts.port
    except ValueError:
        return f"{url!r} has a port that is not a number within 1..65535"
    if port == 0 or not parts.hostname:
        return f"{url!r} needs a host and a port within 1..65535"
    return None


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def default_metrics_url(server_url: str) -> str:
    """Triton's metrics endpoint on the same host as ``server_url`` (port 8002)."""
    host = urlsplit(server_url if "//" in server_url else f"//{server_url}").hostname or "localhost"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{DEFAULT_METRICS_PORT}/metrics"


@dataclass(frozen=True)
class LatencyLimit:
    """``pNN=X``: the NN-th latency percentile must stay at or under ``limit_us``."""

    percentile: float
    limit_us: float

    def __post_init__(self) -> None:
        raise_problems(
            check(
                (
                    0 < self.percentile <= 100,
                    "latency_limit",
                    f"{{latency_limit}} percentile must be within (0, 100], got p{self.percentile:g}",
                ),
                (
                    self.limit_us > 0 and math.isfinite(self.limit_us),
                    "latency_limit",
                    "{latency_limit} must be a positive time",
                ),
            )
        )

    def __str__(self) -> str:
        return f"p{self.percentile:g} <= {self.limit_us / 1000:g} ms"


@dataclass(frozen=True)
class SweepSettings:
    """Everything that defines a sweep; stored whole with the run (headers by name only)."""

    model: str
    levels: tuple[float, ...]
    """Concurrency levels (integers) or, for ``request_rate``, target rates in requests/s."""
    url: str = DEFAULT_GRPC_URL
    protocol: Protocol = "grpc"
    grpc_client: str = "h2"
    """``--grpc-client``: ``h2`` (loadgen's lean HTTP/2 client) or ``aio`` (grpc.aio)."""
    max_connections: int | None = None
    """``--max-connections``: gRPC requests share this many HTTP/2 connections, the workers'
    together; None: one connection per 64 slots."""
    tls: TlsSettings | None = None
    """``--ssl`` options (file paths only, never contents); None: plain connections."""
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    """``-H``: sent with every request (auth tokens); never stored, only their names."""
    sequence_length: int | None = None
    """``--sequence-length``: requests per sequence of a sequence model (varied by
    ``sequence_length_variation``); None: 20, or each input data stream's length."""
    sequence_length_variation: float | None = None
    """``--sequence-length-variation``: a sequence's length is drawn uniformly within this percent of
    ``sequence_length``; None: 20."""
    num_of_sequences: int | None = None
    """``--num-of-sequences``: sequences active at once in open loop; None: 4."""
    sequence_id_range: tuple[int, int] | None = None
    """``--sequence-id-range``: correlation ids [start, end) this run uses (several loadgens on one
    server each take their own); None: from 1."""
    shared_memory: str = "none"
    """``--shared-memory``: ``system`` places the inputs in a registered POSIX shared-memory
    region (:mod:`loadgen.shared_memory`); ``cuda`` is refused (no GPU here)."""
    output_shared_memory_size: int | None = None
    """``--output-shared-memory-size``: bytes per output per in-flight slot, in a registered region
    the server writes outputs to (with ``shared_memory`` system, closed loop)."""
    serial_sequences: bool = False
    """``--serial-sequences``: in open loop, a sequence's next request waits for the previous answer."""
    request_parameters: dict[str, bool | int | str] = field(default_factory=dict)
    """``--request-parameter``: sent with every request as Triton request parameters (priority,
    timeout, or what the model reads), in the request built once."""
    scenario: Scenario = "concurrency"
    model_version: str = ""
    composing_models: tuple[str, ...] = ()
    """``--composing-models``: the models a BLS model calls (an ensemble's come from its config)."""
    trace_rate: int = 0
    """``--trace-rate``: Triton traces one request in this many (0: off), joined to loadgen's sends."""
    trace_count: int = -1
    """``--trace-count``: at most this many traced requests per step (-1: no limit)."""
    trace_file: str | None = None
    """``--trace-file``: Triton's trace file where this machine reads it (None: the server's path)."""
    metrics_url: str | None = None
    """None: derived from ``url`` (same host, port 8002). Empty string: no scraping."""
    metrics_families: tuple[str, ...] = ()
    """``--metrics-family``: regular expressions of families kept beside ``nv_*`` (a model's own)."""
    batch_size: int = 1
    input_data: str = "random"
    """``random`` (seeded), ``zero``, a perf_analyzer JSON file or directory, or ``.npy``/``.npz``."""
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """``--shape``: sizes of variable input dimensions (without the batch dimension)."""
    seed: int = 0
    measurement: MeasurementSettings = field(default_factory=MeasurementSettings)
    labels: dict[str, str] = field(default_factory=dict)
    distribution: Distribution = "constant"
    """Open loop: gaps between sends, constant or Poisson (seeded by ``seed``)."""
    max_in_flight: int = 1024
    """Open loop: requests beyond this many in flight are refused and counted."""
    pacing: Pacing = "auto"
    """Open loop: how the sender waits for a send's time (``auto``: timerfd where there is one)."""
    request_intervals_us: tuple[float, ...] = ()
    """Open loop: a replayed send plan (microseconds between sends), looped; one step."""
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
    ray: str = ""
    """``--ray ADDRESS``: the workers are Ray actors on that cluster (``auto``, ``host:port``, ``ray://...``)."""
    request_timeout_s: float = REQUEST_TIMEOUT_S
    """``--request-timeout``: a request unanswered this long fails as DEADLINE_EXCEEDED; 0: never."""
    retry_unavailable_s: float = 0.0
    """``--retry-unavailable``: a server lost mid-step is waited for this long, and the sweep goes on
    with the next level (the cut step stored, marked); 0: the run fails, its finished steps kept."""
    repeats: int = 1
    """``--repeats``: the whole sweep this many times, each run stored, tied by a ``repeats`` label."""
    max_error_rate: float | None = None
    """``--max-error-rate``: percent of a step's requests that may fail before the command exits 4;
    None: only a run in which every request of every step failed exits 4."""
    streaming: bool = False
    """``--streaming``: each request over Triton's gRPC stream (ModelStreamInfer) or HTTP
    ``generate_stream`` (server-sent events), every response time-stamped: what decoupled models
    need, and the only way to see a stream's timing."""
    token_output: str = ""
    """``--token-output``: a response's tokens are the elements of this output (tokens/s for a model
    that sends several tokens per response); "": one token per response."""
    cancel_after_ms: int | None = None
    """``--cancel-after-ms``: cancel picked streamed requests this long after their send."""
    cancel_after_responses: int | None = None
    """``--cancel-after-responses``: cancel picked streamed requests at their N-th response."""
    cancel_share_pct: float = 100.0
    """``--cancel-share``: the share of streamed requests picked for cancelling (spread evenly)."""

    @property
    def cancelling(self) -> bool:
        return self.cancel_after_ms is not None or self.cancel_after_responses is not None

    def __post_init__(self) -> None:
        raise_problems(self.problems())

    def problems(self) -> list[SettingProblem]:
        """Every rule this object breaks (none once constructed: construction raises them)."""
        closed = self.scenario == "concurrency"
        rate = self.scenario == "request_rate"
        tls = self.tls
        scheme = url_scheme(self.url)
        url_problem = _address_problem(self.url, ("", "http", "https", "grpc", "grpcs"))
        metrics_problem = _address_problem(self.metrics_url, ("http", "https")) if self.metrics_url else None
        return check(
            (url_problem is None, "url", f"{{url}} {url_problem}"),
            (1 <= self.repeats <= 1000, "repeats", f"{{repeats}} must be within 1..1000, got {self.repeats}"),
            (
                metrics_problem is None,
                "metrics_url",
                f"{{metrics_url}} {metrics_problem}",
            ),
            (
                self.model_version == "" or self.model_version.isdigit(),
                "model_version",
                f"{{model_version}} must be a version number such as 1 (or left out: the server's choice), "
                f"got {self.model_version!r}",
            ),
            (bool(self.model), "model", "a model name is required ({model} MODEL)"),
            (bool(self.levels), "levels", "the sweep has no load levels"),
            (
                closed or rate,
                "scenario",
                f"scenario must be concurrency or request_rate, got {self.scenario!r}",
            ),
            (
                not closed or all(level >= 1 and level == int(level) for level in self.levels),
                "concurrency",
                "{concurrency} levels must be whole numbers >= 1",
            ),
            (
                not rate or all(level > 0 for level in self.levels),
                "request_rate",
                "{request_rate} rates must be > 0",
            ),
            (
                self.distribution in DISTRIBUTIONS,
                "distribution",
                f"{{distribution}} must be {' or '.join(DISTRIBUTIONS)}, got {self.distribution!r}",
            ),
            (
                self.pacing in PACINGS,
                "pacing",
                f"{{pacing}} must be {', '.join(PACINGS)}, got {self.pacing!r}",
            ),
            (
                self.ramp_from is None or (rate and len(self.levels) == 1),
                "ramp",
                "a ramp is one open-loop step: give it alone, as {ramp} FROM:TO:SECONDS",
            ),
            (
                not self.search or self.latency_limit is not None,
                "search",
                "{search} needs {latency_limit} pNN=X (e.g. p99=50ms)",
            ),
            (
                not (self.search and self.request_intervals_us),
                "search",
                "{search} needs {concurrency} or {request_rate}, not {request_intervals}",
            ),
            (
                self.streaming or not self.token_output,
                "token_output",
                "{token_output} counts a stream's tokens: it needs {streaming}",
            ),
            (
                self.streaming or not self.cancelling,
                "cancel_after_ms" if self.cancel_after_ms is not None else "cancel_after_responses",
                "cancelling needs {streaming}: only a stream is cancelled midway",
            ),
            (
                self.cancel_after_ms is None or self.cancel_after_ms > 0,
                "cancel_after_ms",
                f"{{cancel_after_ms}} must be > 0 ms, got {self.cancel_after_ms}",
            ),
            (
                self.cancel_after_responses is None or self.cancel_after_responses >= 1,
                "cancel_after_responses",
                f"{{cancel_after_responses}} must be at least 1, got {self.cancel_after_responses}",
            ),
            (
                0.0 < self.cancel_share_pct <= 100.0,
                "cancel_share_pct",
                f"{{cancel_share_pct}} must be a percentage within (0, 100], got {self.cancel_share_pct:g}",
            ),
            (
                self.cancel_share_pct == 100.0 or self.cancelling,
                "cancel_share_pct",
                "{cancel_share_pct} goes with {cancel_after_ms} or {cancel_after_responses}",
            ),
            (
                not (self.validate and self.cancelling),
                "validate",
                "{validate} checks whole streams: a cancelled one has nothing to check",
            ),
            (
                self.protocol in PROTOCOLS,
                "protocol",
                f"{{protocol}} must be {' or '.join(PROTOCOLS)}, got {self.protocol!r}",
            ),
            (
                self.grpc_client in GRPC_CLIENTS,
                "grpc_client",
                f"{{grpc_client}} must be {' or '.join(GRPC_CLIENTS)}, got {self.grpc_client!r}",
            ),
            (
                self.max_connections is None or self.max_connections >= 1,
                "max_connections",
                f"{{max_connections}} must be >= 1, got {self.max_connections}",
            ),
            (
                self.max_connections is None or self.protocol == "grpc",
                "max_connections",
                "{max_connections} applies to gRPC (HTTP/1.1 carries one request per connection: "
                "its connections are the concurrency)",
            ),
            (
                self.workers is None or 1 <= self.workers <= MAX_WORKERS,
                "workers",
                f"{{workers}} must be within 1..{MAX_WORKERS}, got {self.workers}",
            ),
            (
                self.request_timeout_s >= 0 and math.isfinite(self.request_timeout_s),
                "request_timeout_s",
                "{request_timeout_s} must be a number of seconds >= 0 (0: no deadline)",
            ),
            (
                self.retry_unavailable_s >= 0 and math.isfinite(self.retry_unavailable_s),
                "retry_unavailable_s",
                f"{{retry_unavailable_s}} must be a number of seconds >= 0, got {self.retry_unavailable_s:g}",
            ),
            (
                self.max_error_rate is None or 0.0 <= self.max_error_rate <= 100.0,
                "max_error_rate",
                f"{{max_error_rate}} must be a percentage within 0..100, got {self.max_error_rate}",
            ),
            (
                self.max_in_flight >= 1,
                "max_in_flight",
                f"{{max_in_flight}} must be >= 1, got {self.max_in_flight}",
            ),
            (self.batch_size >= 1, "batch_size", f"{{batch_size}} must be >= 1, got {self.batch_size}"),
            (self.seed >= 0, "seed", f"{{seed}} must be >= 0, got {self.seed}"),
            (
                all(_compiles(pattern) for pattern in self.metrics_families),
                "metrics_families",
                f"{{metrics_families}} must be regular expressions; got {list(self.metrics_families)}",
            ),
            (
                self.input_data in INPUT_KEYWORDS or Path(self.input_data).exists(),
                "input_data",
                f"{{input_data}} must be random, zero, a data file or a directory; "
                f"{self.input_data!r} is none",
            ),
            (
                not (self.protocol == "grpc" and scheme == "https"),
                "url",
                f"{{url}} {self.url} is an HTTPS address: for gRPC over TLS give host:port and {{ssl}}",
            ),
            (
                not (tls is not None and scheme == "http"),
                "url",
                f"{{url}} {self.url} is plain HTTP but TLS was asked for: use https://",
            ),
            (
                not (self.protocol == "grpc" and tls is not None and tls.insecure),
                "ssl_insecure",
                GRPC_INSECURE,
            ),
            *shared_memory_rules(
                self.shared_memory,
                self.output_shared_memory_size,
                http_stream=self.streaming and self.protocol == "http",
                streaming=self.streaming,
            ),
            *trace_rules(self),
            *ray_rules(self),
            *sequence_rules(
                self.sequence_length,
                self.sequence_length_variation,
                self.num_of_sequences,
                self.sequence_id_range,
                self.levels,
                closed,
            ),
        )

    @property
    def resolved_metrics_url(self) -> str | None:
        if self.metrics_url is None:
            return default_metrics_url(self.url)
        return self.metrics_url or None

    def to_dict(self) -> dict[str, Any]:
        """What a run stores: every field, the metrics URL resolved, headers by name only."""
        data = dataclasses.asdict(self)
        del data["headers"]
        if self.headers:
            data["header_names"] = sorted(self.headers)
        data["levels"] = list(self.levels)
        data["request_intervals_us"] = list(self.request_intervals_us)
        if self.latency_limit is not None:
            data["latency_limit"] = {
                "percentile": self.latency_limit.percentile,
                "limit_us": self.latency_limit.limit_us,
            }
        data["metrics_url"] = self.resolved_metrics_url
        return data
