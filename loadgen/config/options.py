"""Every sweep option, once: its key, its command-line flags, its help and its parser.

The key is the name everywhere a user sets the option: the ``SweepSettings`` field
(or, for options that derive fields, the name listed in :data:`DERIVED`), the plan key,
the ``-m name:key=value`` key and the argparse dest. The command line builds its
flags from this table, plans and ``-m`` look keys up in it, and
:func:`loadgen.config.build.build_settings` parses each value with its ``parse``.
A flag's own name (``--request-timeout`` -> ``request_timeout``) is accepted as the key too.

Adding an option: a field in ``SweepSettings`` (with its rule in ``problems()``), one
``Option`` here (or, for how each request is sent, in :mod:`loadgen.config.request_options`), and
its use in the engine.
"""

from __future__ import annotations

from dataclasses import fields

from loadgen.config import values
from loadgen.config.measure_options import MEASURE_OPTIONS
from loadgen.config.measurement import MeasurementSettings
from loadgen.config.option import CHECKS, INPUTS, LOAD, MEASURE, SERVER, TLS, Option
from loadgen.config.request_options import REQUEST_OPTIONS
from loadgen.config.settings import (
    DEFAULT_GRPC_URL,
    DEFAULT_HTTP_URL,
    GRPC_CLIENTS,
    REQUEST_TIMEOUT_S,
    SweepSettings,
)

OPTIONS: tuple[Option, ...] = (
    # -- what and where
    Option(
        "model",
        ("-m", "--model"),
        "model name on the server; repeat to load several models at once, each optionally with its own "
        "settings (-m b:concurrency=1..4,batch-size=2; any sweep option's key)",
        metavar="MODEL[:key=value,...]",
        repeat=True,
        group=SERVER,
    ),
    Option(
        "model_version",
        ("-x", "--model-version"),
        "model version (default: the server's choice)",
        group=SERVER,
    ),
    Option(
        "composing_models",
        ("--composing-models", "--bls-composing-models"),
        "the models a BLS model calls, comma-separated: each one's /stats is kept per step beside the "
        "model's own (an ensemble's are read from its config; default: none)",
        values.model_names,
        metavar="MODEL,MODEL",
        repeat=True,
        group=SERVER,
    ),
    Option(
        "url",
        ("-u", "--url"),
        f"server address (default {DEFAULT_GRPC_URL} for gRPC, {DEFAULT_HTTP_URL} for HTTP)",
        group=SERVER,
    ),
    Option(
        "protocol",
        ("-i", "--protocol"),
        "inference protocol (default grpc)",
        metavar="grpc|http",
        group=SERVER,
    ),
    *REQUEST_OPTIONS,
    Option(
        "grpc_client",
        ("--grpc-client",),
        "gRPC client: h2 (loadgen's lean HTTP/2 client, default) or aio (gRPC's own grpc.aio)",
        metavar="|".join(GRPC_CLIENTS),
        group=SERVER,
    ),
    Option(
        "max_connections",
        ("--max-connections",),
        "gRPC: multiplex every in-flight request over this many HTTP/2 connections, shared by the "
        "workers (default: one connection per 64 in flight)",
        values.whole,
        metavar="N",
        group=SERVER,
    ),
    Option(
        "request_timeout_s",
        ("--request-timeout",),
        f"a request unanswered this long fails as DEADLINE_EXCEEDED and its slot sends again "
        f"(default {REQUEST_TIMEOUT_S:g}s; 0: wait forever; a plain number is seconds)",
        values.duration_s,
        metavar="TIME",
        group=SERVER,
    ),
    Option(
        "retry_unavailable_s",
        ("--retry-unavailable",),
        "when the server goes away mid-sweep, wait up to TIME (30s, 2m) for it to come back and go on with "
        "the next level (the cut step is stored, marked interrupted); default 0: the run fails, its "
        "finished steps kept",
        values.duration_s,
        metavar="TIME",
        group=SERVER,
    ),
    Option(
        "headers",
        ("-H", "--header"),
        "send this header (gRPC metadata) with every request (repeatable; default none); never "
        "stored, only its name",
        values.headers,
        metavar="'NAME: VALUE'",
        repeat=True,
        group=SERVER,
    ),
    Option(
        "metrics_url",
        ("--metrics-url",),
        "Prometheus endpoint (default: the server's host, port 8002; off: none)",
        values.metrics_url,
        group=SERVER,
    ),
    Option(
        "no_metrics",
        ("--no-metrics",),
        "do not scrape the metrics endpoint",
        values.boolean,
        switch=True,
        group=SERVER,
    ),
    Option(
        "metrics_families",
        ("--metrics-family",),
        "also keep the metric families whose names match this regular expression (repeatable), "
        "such as a model's own custom_.*: Triton's nv_* families are always kept (default: only those)",
        values.patterns,
        metavar="REGEX",
        repeat=True,
        group=SERVER,
    ),
    Option(
        "metrics_interval_ms",
        ("--metrics-interval",),
        "scrape period (default 1s; a plain number is ms)",
        values.duration_ms,
        metavar="TIME",
        group=SERVER,
    ),
    # -- TLS
    Option(
        "ssl",
        ("--ssl",),
        "talk to the server over TLS (default: plain, unless -u https://)",
        values.boolean,
        switch=True,
        group=TLS,
    ),
    Option(
        "ssl_ca",
        ("--ssl-ca",),
        "PEM root certificates to trust (default: the system's)",
        values.path,
        metavar="FILE",
        group=TLS,
        path=True,
    ),
    Option(
        "ssl_cert",
        ("--ssl-cert",),
        "PEM client certificate (mutual TLS; default: none)",
        values.path,
        metavar="FILE",
        group=TLS,
        path=True,
    ),
    Option(
        "ssl_key",
        ("--ssl-key",),
        "PEM key of --ssl-cert (unencrypted)",
        values.path,
        metavar="FILE",
        group=TLS,
        path=True,
    ),
    Option(
        "ssl_insecure",
        ("--ssl-insecure",),
        "HTTPS only: do not verify the server's certificate or host name (default: verified)",
        values.boolean,
        switch=True,
        group=TLS,
    ),
    # -- load
    Option(
        "concurrency",
        ("--concurrency", "--concurrency-range"),
        "levels: A..B doubles, A..B:S steps, A..B:xF multiplies, a,b,c lists, "
        "start:end:step as perf_analyzer (default 1)",
        values.levels,
        metavar="RANGE",
        group=LOAD,
    ),
    Option(
        "request_rate",
        ("--request-rate", "--request-rate-range"),
        "open loop: target rates in requests/s, same syntax (e.g. 100..1000:100); "
        "latency is measured from each request's intended send time (default: closed loop)",
        values.rates,
        metavar="RANGE",
        group=LOAD,
    ),
    Option(
        "request_intervals",
        ("--request-intervals",),
        "open loop: replay these gaps (microseconds between sends, one per line, looped; "
        "perf_analyzer's format)",
        values.read_intervals,
        metavar="FILE",
        group=LOAD,
        path=True,
    ),
    Option(
        "ramp",
        ("--ramp",),
        "open loop: one step whose rate rises linearly from FROM to TO requests/s over SECONDS "
        "(or a duration: 30s, 2m)",
        values.ramp,
        metavar="FROM:TO:SECONDS",
        group=LOAD,
    ),
    Option(
        "distribution",
        ("--distribution",),
        "open loop: gaps between sends, constant (default) or poisson (seeded by --seed)",
        metavar="constant|poisson",
        group=LOAD,
    ),
    Option(
        "pacing",
        ("--pacing",),
        "open loop: how the sender waits for each send's time: timerfd (a kernel timer, tens of us, "
        "no CPU while waiting), spin (asyncio sleep, then a busy wait: burns a core) or auto "
        "(default: timerfd where the platform has it)",
        metavar="auto|timerfd|spin",
        group=LOAD,
    ),
    Option(
        "max_in_flight",
        ("--max-in-flight",),
        "open loop: requests due while this many are in flight are refused and counted (default 1024)",
        values.whole,
        metavar="N",
        group=LOAD,
    ),
    Option(
        "workers",
        ("--workers",),
        "processes sharing each step's load, histograms merged exactly "
        "(default: from the cores and the heaviest level; 1 on a 2-core machine)",
        values.whole,
        metavar="N",
        group=LOAD,
    ),
    Option(
        "ray",
        ("--ray",),
        "run the workers as Ray actors on the cluster at ADDRESS (auto, HOST:PORT, ray://HOST:10001), "
        "spread over its nodes, one CPU each; --workers counts them (default: off, workers are local "
        "processes; needs pip install 'loadgen[ray]')",
        values.text,
        metavar="ADDRESS",
        group=LOAD,
    ),
    Option(
        "latency_limit",
        ("--latency-limit",),
        "e.g. p99=50ms: stop at the first step over it, or with --search find the highest load under it "
        "(default: no limit, every level runs)",
        values.parse_latency_limit,
        metavar="pNN=X",
        group=LOAD,
    ),
    Option(
        "search",
        ("--search",),
        "bracket and bisect the range for the highest load that meets --latency-limit (default: every level)",
        values.boolean,
        switch=True,
        group=LOAD,
    ),
    # -- measurement
    *MEASURE_OPTIONS,
    Option(
        "trace_rate",
        ("--trace-rate",),
        "trace one request in N with Triton's own tracing, each trace joined to loadgen's timing of "
        "the same request: where the slowest requests' time goes (default 0: off)",
        values.whole,
        metavar="N",
        group=MEASURE,
    ),
    Option(
        "trace_count",
        ("--trace-count",),
        "with --trace-rate: Triton traces at most N requests per step, its warm-up included "
        "(default -1: no limit)",
        values.whole,
        metavar="N",
        group=MEASURE,
    ),
    Option(
        "trace_file",
        ("--trace-file",),
        "Triton's trace file as this machine sees it (default: the path the server reports, read "
        "where the server runs on this machine)",
        values.path,
        metavar="PATH",
        group=MEASURE,
    ),
    # -- inputs
    Option(
        "batch_size",
        ("-b", "--batch-size"),
        "batch size of every request (default 1)",
        values.whole,
        group=INPUTS,
    ),
    Option(
        "input_data",
        ("--input-data",),
        "random (seeded, default), zero, perf_analyzer's JSON input-data file or directory "
        "(a raw file per input), or a .npy/.npz file",
        values.input_data,
        metavar="random|zero|PATH",
        group=INPUTS,
        path=True,
    ),
    Option(
        "shapes",
        ("--shape",),
        "size of an input's variable (-1) dimensions, without the batch dimension (repeatable; "
        "required for each variable input; by default every dimension comes from the model)",
        values.shapes,
        metavar="NAME:d1,d2",
        repeat=True,
        group=INPUTS,
    ),
    Option("seed", ("--seed",), "seed of the random input data (default 0)", values.whole, group=INPUTS),
    # -- answers and bookkeeping
    Option(
        "max_error_rate",
        ("--max-error-rate",),
        "exit 4 when more than PCT%% of a step's requests failed (default: only when every request "
        "of every step failed); the steps are stored either way",
        values.percent,
        metavar="PCT",
        group=CHECKS,
    ),
    Option(
        "validate",
        ("--validate",),
        "check every answer against a reference (the answer at concurrency 1, or the input "
        "file's validation_data); exit 3 on any mismatch",
        values.boolean,
        switch=True,
        group=CHECKS,
    ),
    Option(
        "tolerances",
        ("--tolerance",),
        "--validate tolerance of a float type (defaults FP32/FP64 1e-4,1e-5; FP16 1e-2,1e-3; "
        "BF16 5e-2,1e-2); integers and strings compare exactly",
        values.tolerances,
        metavar="DTYPE=RTOL[,ATOL]",
        repeat=True,
        group=CHECKS,
    ),
    Option(
        "labels",
        ("--label",),
        "tag the run (repeatable; default none; stored, shown by `loadgen runs`)",
        values.labels,
        metavar="KEY=VALUE",
        repeat=True,
        group=CHECKS,
    ),
)

BY_KEY: dict[str, Option] = {option.key: option for option in OPTIONS}
BY_NAME: dict[str, Option] = {name: option for option in OPTIONS for name in option.names}
"""Every accepted spelling (key or flag name, underscores) -> its option."""

LOAD_KEYS = ("concurrency", "request_rate", "request_intervals", "ramp")
"""The options that choose the scenario and its levels: at most one is given."""
TLS_KEYS = ("ssl", "ssl_ca", "ssl_cert", "ssl_key", "ssl_insecure")
MEASUREMENT_KEYS = tuple(f.name for f in fields(MeasurementSettings))

DERIVED: dict[str, tuple[str, ...]] = {
    "levels": LOAD_KEYS,
    "scenario": LOAD_KEYS,
    "request_intervals_us": ("request_intervals",),
    "ramp_from": ("ramp",),
    "ramp_s": ("ramp",),
    "tls": TLS_KEYS,
    "measurement": MEASUREMENT_KEYS,
    "metrics_url": ("metrics_url", "no_metrics"),
}
"""Settings fields that no single option of the same name sets, and the options they come from."""


def spell_flag(key: str) -> str:
    """An option as the command line spells it (``--batch-size``); other keys as they are."""
    option = BY_KEY.get(key)
    return option.flag if option is not None else key


SETTINGS_FIELDS = frozenset(f.name for f in fields(SweepSettings))
