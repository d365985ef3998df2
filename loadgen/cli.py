"""The ``loadgen`` command: parses arguments and wires engine, storage and analysis together.

Every error a user can cause ends here as one line on stderr and an exit code:
0 done, 1 the run failed (server lost), 2 usage or environment error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import logging
import os
import signal
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console

from loadgen import __version__
from loadgen.commands import add_db_option
from loadgen.config import (
    DEFAULT_GRPC_URL,
    DEFAULT_HTTP_URL,
    GRPC_CLIENTS,
    REQUEST_TIMEOUT_S,
    MeasurementSettings,
    SweepSettings,
    parse_latency_limit,
)
from loadgen.engine.schedules import read_intervals
from loadgen.engine.search import SearchResult
from loadgen.engine.step import StepListener
from loadgen.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_MISMATCH,
    EXIT_OK,
    EXIT_USAGE,
    ConfigError,
    LoadgenError,
)
from loadgen.inputs import parse_shapes
from loadgen.ranges import parse_levels, parse_rates
from loadgen.results import RunStatus, StepResult, ValidationTally
from loadgen.tls import add_tls_options, tls_from_args
from loadgen.validation import parse_tolerances


def _labels(items: Sequence[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"bad --label {item!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def _headers(items: Sequence[str]) -> dict[str, str]:
    headers = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip() or any(c in name for c in " \r\n") or any(c in value for c in "\r\n"):
            raise ConfigError(f"bad -H {item.split(':')[0]!r}...: expected 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


def _add_server_ports(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-repository", type=Path, default=None, help="model repository (default: ./model_repository)"
    )
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loadgen", description="Load generation and performance analysis for NVIDIA Triton."
    )
    parser.add_argument("--version", action="version", version=f"loadgen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the embedded Triton server (CPU, Python backend)")
    _add_server_ports(serve)
    serve.add_argument(
        "--log-file", type=Path, default=None, help="write the server log here instead of stdout"
    )
    serve.add_argument("--log-verbose", type=int, default=0, help="Triton's --log-verbose level")
    serve.add_argument(
        "--grpc-tls-cert", type=Path, metavar="FILE", help="serve gRPC over TLS with this PEM certificate"
    )
    serve.add_argument("--grpc-tls-key", type=Path, metavar="FILE", help="... and this PEM private key")
    serve.add_argument(
        "--grpc-tls-client-ca",
        type=Path,
        metavar="FILE",
        help="mutual TLS: accept only clients whose certificate this CA signed",
    )

    sweep = sub.add_parser("sweep", help="measure a model over a range of concurrency levels")
    sweep.add_argument(
        "-m",
        "--model",
        required=True,
        action="append",
        metavar="MODEL[:key=value,...]",
        help="model name on the server; repeat to load several models at once, each optionally with "
        "its own concurrency=RANGE, request-rate=RANGE or batch-size=N (e.g. -m b:concurrency=1..4)",
    )
    sweep.add_argument(
        "-x", "--model-version", default="", help="model version (default: the server's choice)"
    )
    sweep.add_argument(
        "-u",
        "--url",
        default=None,
        help=f"server address (default {DEFAULT_GRPC_URL} for gRPC, {DEFAULT_HTTP_URL} for HTTP)",
    )
    sweep.add_argument(
        "-i", "--protocol", default="grpc", choices=["grpc", "http"], help="inference protocol (default grpc)"
    )
    sweep.add_argument(
        "--concurrency",
        "--concurrency-range",
        default=None,
        metavar="RANGE",
        help="levels: A..B doubles, A..B:S steps, A..B:xF multiplies, a,b,c lists, "
        "start:end:step as perf_analyzer (default 1)",
    )
    sweep.add_argument(
        "--request-rate",
        "--request-rate-range",
        default=None,
        metavar="RANGE",
        help="open loop: target rates in requests/s, same syntax (e.g. 100..1000:100); "
        "latency is measured from each request's intended send time",
    )
    sweep.add_argument(
        "--distribution",
        default="constant",
        choices=["constant", "poisson"],
        help="open loop: gaps between sends (Poisson is seeded by --seed)",
    )
    sweep.add_argument(
        "--request-intervals",
        default=None,
        metavar="FILE",
        help="open loop: replay this schedule (microseconds between sends, one per line, looped)",
    )
    sweep.add_argument(
        "--ramp",
        default=None,
        metavar="FROM:TO:SECONDS",
        help="open loop: one step whose rate rises linearly from FROM to TO requests/s over SECONDS",
    )
    sweep.add_argument(
        "--max-in-flight",
        type=int,
        default=1024,
        help="open loop: requests due while this many are in flight are refused and counted (default 1024)",
    )
    sweep.add_argument(
        "--latency-limit",
        default=None,
        metavar="pNN=X",
        help="e.g. p99=50ms: stop at the first step over it, or with --search find the highest load under it",
    )
    sweep.add_argument(
        "--search",
        action="store_true",
        help="bracket and bisect the range for the highest load that meets --latency-limit",
    )
    sweep.add_argument(
        "--grpc-client",
        choices=GRPC_CLIENTS,
        default="h2",
        help="gRPC client: h2 (loadgen's lean HTTP/2 client, default) or aio (gRPC's own grpc.aio)",
    )
    sweep.add_argument(
        "--request-timeout",
        type=float,
        default=REQUEST_TIMEOUT_S,
        metavar="SECONDS",
        help=f"a request unanswered this long fails as DEADLINE_EXCEEDED and its slot sends again "
        f"(default {REQUEST_TIMEOUT_S:g}; 0: wait forever)",
    )
    sweep.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processes sharing each step's load, histograms merged exactly "
        "(default: from the cores and the heaviest level; 1 on a 2-core machine)",
    )
    sweep.add_argument(
        "--validate",
        action="store_true",
        help="check every answer against a reference (the answer at concurrency 1, or the input "
        "file's validation_data); exit 3 on any mismatch",
    )
    sweep.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="DTYPE=RTOL[,ATOL]",
        help="--validate tolerance of a float type (defaults FP32/FP64 1e-4,1e-5; FP16 1e-2,1e-3; "
        "BF16 5e-2,1e-2); integers and strings compare exactly",
    )
    sweep.add_argument(
        "-p",
        "--measurement-interval",
        type=int,
        default=5000,
        metavar="MS",
        help="measurement window in ms (default 5000)",
    )
    sweep.add_argument(
        "--warmup", type=int, default=1000, metavar="MS", help="warm-up per step in ms (default 1000)"
    )
    sweep.add_argument(
        "-s",
        "--stability-percentage",
        type=float,
        default=10.0,
        help="max deviation of the last 3 windows from their mean, %% (default 10)",
    )
    sweep.add_argument("-r", "--max-trials", type=int, default=10, help="max windows per step (default 10)")
    sweep.add_argument("-b", "--batch-size", type=int, default=1)
    sweep.add_argument(
        "--input-data",
        default="random",
        metavar="random|zero|FILE",
        help="random (seeded, default), zero, perf_analyzer's JSON input-data file, or a .npy/.npz file",
    )
    sweep.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="NAME:d1,d2",
        help="size of an input's variable dimensions (without the batch dimension)",
    )
    sweep.add_argument("--seed", type=int, default=0, help="seed of the random input data")
    sweep.add_argument(
        "--metrics-url", default=None, help="Prometheus endpoint (default: the server's host, port 8002)"
    )
    sweep.add_argument(
        "--metrics-interval", type=int, default=1000, metavar="MS", help="scrape period in ms (default 1000)"
    )
    sweep.add_argument("--no-metrics", action="store_true", help="do not scrape the metrics endpoint")
    sweep.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="tag the run")
    sweep.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="send this header (gRPC metadata) with every request; never stored, only its name",
    )
    add_tls_options(sweep)
    sweep.add_argument("--csv", type=Path, default=None, help="write perf_analyzer's -f CSV (+ our columns)")
    sweep.add_argument("--report", type=Path, default=None, metavar="FILE", help="write the HTML report")
    sweep.add_argument(
        "--embedded",
        action="store_true",
        help="start the embedded server on free ports for this run and stop it after",
    )
    sweep.add_argument(
        "--model-repository", type=Path, default=None, help="with --embedded: model repository"
    )
    sweep.add_argument("-q", "--quiet", action="store_true", help="no live progress")
    sweep.add_argument(
        "--exporter-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve loadgen's own Prometheus metrics on this port while the sweep runs (e.g. 9108)",
    )
    add_db_option(sweep)

    runs = sub.add_parser("runs", help="list stored runs")
    runs.add_argument("-m", "--model", default=None, help="only runs of this model")
    runs.add_argument("-n", "--limit", type=int, default=50)
    add_db_option(runs)

    show = sub.add_parser("show", help="the stored table of one run")
    show.add_argument("run_id", type=int)
    show.add_argument("--csv", type=Path, default=None, help="also write perf_analyzer's CSV")
    add_db_option(show)

    db = sub.add_parser("db", help="database schema (alembic)")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = db_sub.add_parser("upgrade", help="upgrade the schema to this loadgen's revision")
    add_db_option(up)
    cur = db_sub.add_parser("current", help="print the schema revision")
    add_db_option(cur)
    for name in COMMAND_MODULES:
        importlib.import_module(f"loadgen.commands.{name}").register(sub)
    return parser


def _ramp(text: str) -> tuple[float, float, float]:
    try:
        start, end, seconds = (float(part) for part in text.split(":"))
    except ValueError:
        raise ConfigError(f"bad --ramp {text!r}: expected FROM:TO:SECONDS, e.g. 100:1000:30") from None
    if start <= 0 or end <= 0 or seconds <= 0:
        raise ConfigError(f"bad --ramp {text!r}: rates and duration must be > 0")
    return start, end, seconds


def settings_from_args(args: argparse.Namespace) -> SweepSettings:
    measurement = MeasurementSettings(
        measurement_interval_ms=args.measurement_interval,
        warmup_ms=args.warmup,
        stability_percentage=args.stability_percentage,
        max_trials=args.max_trials,
        metrics_interval_ms=args.metrics_interval,
    )
    open_loop = [a for a in ("request_rate", "request_intervals", "ramp") if getattr(args, a) is not None]
    if args.concurrency is not None and open_loop:
        raise ConfigError("give either --concurrency or --request-rate/--request-intervals/--ramp, not both")
    if len(open_loop) > 1:
        raise ConfigError("give only one of --request-rate, --request-intervals and --ramp")
    intervals: tuple[float, ...] = ()
    levels: tuple[float, ...]
    ramp = None
    if args.ramp is not None:
        ramp = _ramp(args.ramp)
        levels = (ramp[1],)
    elif args.request_intervals is not None:
        intervals = read_intervals(args.request_intervals)
        levels = (1e6 / (sum(intervals) / len(intervals)),)
    elif args.request_rate is not None:
        levels = parse_rates(args.request_rate)
    else:
        levels = parse_levels("1" if args.concurrency is None else args.concurrency)
    return SweepSettings(
        model=args.model[0].partition(":")[0],
        levels=levels,
        scenario="request_rate" if open_loop else "concurrency",
        distribution=args.distribution,
        max_in_flight=args.max_in_flight,
        request_intervals_us=intervals,
        ramp_from=None if ramp is None else ramp[0],
        ramp_s=0.0 if ramp is None else ramp[2],
        latency_limit=None if args.latency_limit is None else parse_latency_limit(args.latency_limit),
        search=args.search,
        validate=args.validate,
        workers=args.workers,
        grpc_client=args.grpc_client,
        request_timeout_s=args.request_timeout,
        tolerances=parse_tolerances(args.tolerance),
        url=args.url or (DEFAULT_HTTP_URL if args.protocol == "http" else DEFAULT_GRPC_URL),
        protocol=args.protocol,
        tls=tls_from_args(args),
        model_version=args.model_version,
        metrics_url="" if args.no_metrics else args.metrics_url,
        batch_size=args.batch_size,
        input_data=args.input_data,
        shapes=parse_shapes(args.shape),
        seed=args.seed,
        measurement=measurement,
        labels=_labels(args.label),
    )


@contextlib.contextmanager
def _embedded(args: argparse.Namespace, console: Console) -> Iterator[Any]:
    from loadgen.server import EmbeddedServer, ServerPorts

    server = EmbeddedServer(args.model_repository, ServerPorts.free())
    console.print(f"starting the embedded Triton server on {server.grpc_url} ...", highlight=False)
    with server:
        yield server


MODEL_OPTIONS = ("concurrency", "request-rate", "batch-size")


def model_settings(args: argparse.Namespace, base: SweepSettings) -> list[SweepSettings]:
    """One settings object per ``-m``; ``-m name:key=value,...`` overrides the shared load."""
    result = []
    for item in args.model:
        name, _, options = item.partition(":")
        changes: dict[str, Any] = {"model": name}
        for option in filter(None, options.split(",")):
            key, sep, value = option.partition("=")
            if not sep or key not in MODEL_OPTIONS:
                keys = ", ".join(MODEL_OPTIONS)
                raise ConfigError(f"bad -m {item!r}: expected MODEL or MODEL:key=value,... with keys {keys}")
            if key == "concurrency":
                changes.update(levels=parse_levels(value), scenario="concurrency")
            elif key == "request-rate":
                changes.update(levels=parse_rates(value), scenario="request_rate")
            else:
                changes["batch_size"] = _int_option(item, value)
        result.append(dataclasses.replace(base, **changes))
    if len({s.model for s in result}) != len(result):
        raise ConfigError("each -m names a different model")
    return result


def _int_option(item: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"bad -m {item!r}: batch-size must be a whole number") from None


def cmd_sweep(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)  # usage errors before anything starts
    several = model_settings(args, settings)
    if len(several) > 1:
        return _sweep_models(args, several)
    return _sweep_one(args, several[0])


def _sweep_one(args: argparse.Namespace, settings: SweepSettings) -> int:
    from loadgen.engine.step import Listeners
    from loadgen.runner import execute_sweep
    from loadgen.storage import RunStore

    headers = _headers(args.header)
    err = Console(stderr=True)
    with contextlib.ExitStack() as stack:
        exporter = None
        if args.exporter_port is not None:  # before the server: a taken port fails fast
            from loadgen.exporter import SweepExporter

            exporter = stack.enter_context(SweepExporter(settings, args.exporter_port))
        if args.embedded:
            server = stack.enter_context(_embedded(args, err))
            settings = SweepSettings(
                **{
                    **settings.__dict__,
                    "url": server.http_url if args.protocol == "http" else server.grpc_url,
                    "metrics_url": "" if args.no_metrics else server.metrics_url,
                }
            )
        store = RunStore(args.db)
        stack.callback(store.close)
        progress = None
        if not args.quiet:
            from loadgen.console.progress import SweepProgress

            label = "rate" if settings.scenario == "request_rate" else "concurrency"
            progress = stack.enter_context(SweepProgress(settings.levels, err, label=label))
        listener = Listeners(progress, exporter)
        on_run_created = exporter.run_created if exporter else None
        outcome = _run_async(
            execute_sweep(settings, store, listener=listener, headers=headers, on_run_created=on_run_created)
        )
    _print_run(store_url=args.db, run_id=outcome.run_id, csv_path=args.csv)
    if outcome.search is not None and settings.latency_limit is not None:
        _print_search(outcome.search, settings)
    if args.report is not None:
        from loadgen.commands.report import write_run_report

        write_run_report(args.db, [outcome.run_id], args.report)
    _warn_unanswered([outcome])
    if outcome.status is RunStatus.FAILED:
        print(
            f"loadgen: run {outcome.run_id} failed: {outcome.error} "
            f"({len(outcome.steps)} finished step(s) kept)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return _mismatch_exit([outcome])


def _warn_unanswered(outcomes: Sequence[Any]) -> None:
    """One line per closed-loop step in which slots went unanswered for a whole window."""
    from analysis.findings import unanswered_text

    for outcome in outcomes:
        for step in outcome.steps:
            if step.unanswered_slots:
                level = f"run {outcome.run_id}, concurrency {step.concurrency}"
                text = unanswered_text(level, step.unanswered_slots, step.concurrency)
                print(f"loadgen: warning: {text}", file=sys.stderr)


def _mismatch_exit(outcomes: Sequence[Any]) -> int:
    """Exit 3 when ``--validate`` found answers outside the tolerance (one line per run)."""
    code = EXIT_OK
    for outcome in outcomes:
        total = ValidationTally.merged(s.validation for s in outcome.steps)
        if total is not None and total.mismatched:
            print(
                f"loadgen: run {outcome.run_id}: {total.mismatched} of {total.checked} answers differ from "
                f"the reference beyond the tolerance ({total.swapped} equal another request's reference: "
                f"swapped/stale); first: {total.example}",
                file=sys.stderr,
            )
            code = EXIT_MISMATCH
    return code


class _StepLines(StepListener):
    """With several models at once, one line per finished step (bars would interleave)."""

    def __init__(self, model: str, console: Console) -> None:
        self.model, self.console = model, console

    def step_done(self, step: StepResult) -> None:
        level = (
            f"rate {step.request_rate:g}/s"
            if step.request_rate is not None
            else f"concurrency {step.concurrency}"
        )
        flag = "" if step.stable else " (unstable)"
        self.console.print(f"{self.model}: {level}: {step.throughput:,.1f} infer/s{flag}", highlight=False)


def _sweep_models(args: argparse.Namespace, several: list[SweepSettings]) -> int:
    """Several models loaded at the same time, each its own run, tied by a ``group`` label."""
    from loadgen.runner import SweepOutcome, execute_sweep, prepare
    from loadgen.scrape.server_api import ServerAPI
    from loadgen.storage import RunStore

    if args.exporter_port is not None or any(s.search for s in several):
        raise ConfigError("--exporter-port and --search take one model at a time")
    headers = _headers(args.header)
    err = Console(stderr=True)
    group = uuid.uuid4().hex[:12]
    with contextlib.ExitStack() as stack:
        if args.embedded:
            server = stack.enter_context(_embedded(args, err))
            url = server.http_url if args.protocol == "http" else server.grpc_url
            metrics = "" if args.no_metrics else server.metrics_url
            several = [dataclasses.replace(s, url=url, metrics_url=metrics) for s in several]
        models = ",".join(s.model for s in several)
        several = [
            dataclasses.replace(s, labels={**s.labels, "group": group, "models": models}) for s in several
        ]
        store = RunStore(args.db)
        stack.callback(store.close)

        async def together() -> list[SweepOutcome]:
            for settings in several:  # every model checked before any load: no half-started group
                api = ServerAPI(settings.url, settings.protocol, headers, tls=settings.tls)
                try:
                    await prepare(settings, api)
                finally:
                    await api.close()
            sweeps = [
                execute_sweep(
                    s, store, listener=None if args.quiet else _StepLines(s.model, err), headers=headers
                )
                for s in several
            ]
            return list(await asyncio.gather(*sweeps))

        outcomes: list[SweepOutcome] = _run_async(together())
    for settings, outcome in zip(several, outcomes, strict=True):
        csv_path = (
            None
            if args.csv is None
            else args.csv.with_name(f"{args.csv.stem}.{settings.model}{args.csv.suffix}")
        )
        _print_run(store_url=args.db, run_id=outcome.run_id, csv_path=csv_path)
    if args.report is not None:
        from loadgen.commands.report import write_run_report

        write_run_report(args.db, [o.run_id for o in outcomes], args.report)
    _warn_unanswered(outcomes)
    failed = [o for o in outcomes if o.status is RunStatus.FAILED]
    for outcome in failed:
        print(f"loadgen: run {outcome.run_id} failed: {outcome.error}", file=sys.stderr)
    return EXIT_FAILED if failed else _mismatch_exit(outcomes)


def _print_search(result: SearchResult, settings: SweepSettings) -> None:
    unit = "/s" if settings.scenario == "request_rate" else ""
    what = "rate" if settings.scenario == "request_rate" else "concurrency"
    limit = settings.latency_limit
    probes = len(result.probes)
    if result.best is None:
        lowest = f"{what} {min(settings.levels):g}{unit}"
        print(f"SLO {limit}: even the lowest load ({lowest}) misses it ({probes} probe(s))")
    elif result.first_miss is None:
        print(
            f"SLO {limit}: met up to the top of the range ({what} {result.best:g}{unit}); try a wider range"
        )
    else:
        print(
            f"SLO {limit}: highest {what} meeting it: {result.best:g}{unit} "
            f"({result.first_miss:g}{unit} misses; {probes} probes)"
        )


def _run_async(coro: Any) -> Any:
    """asyncio.run with SIGTERM treated like Ctrl-C (the main task is cancelled)."""

    async def main() -> Any:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGTERM, task.cancel)
        return await coro

    try:
        return asyncio.run(main())
    except asyncio.CancelledError as exc:
        raise KeyboardInterrupt from exc


def _stdout_console() -> Console:
    """Tables are wide: when stdout is a file or pipe, do not wrap them at 80 columns."""
    return Console() if sys.stdout.isatty() else Console(width=220)


def _print_run(store_url: str, run_id: int, csv_path: Path | None) -> None:
    from analysis import latency_table, load_run, write_perf_analyzer_csv
    from loadgen.console.tables import print_latency_table

    run, frame = load_run(store_url, run_id)
    print_latency_table(run, latency_table(frame), _stdout_console())
    if csv_path is not None:
        write_perf_analyzer_csv(frame, csv_path)
        print(f"wrote {csv_path}", file=sys.stderr)


def cmd_runs(args: argparse.Namespace) -> int:
    from loadgen.console.tables import print_runs
    from loadgen.storage import RunStore

    store = RunStore(args.db)
    try:
        print_runs(store.list_runs(model=args.model, limit=args.limit), _stdout_console())
    finally:
        store.close()
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    _print_run(args.db, args.run_id, args.csv)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from loadgen.server import EmbeddedServer, ServerPorts, grpc_tls_args, serve_forever

    ports = ServerPorts(http=args.http_port, grpc=args.grpc_port, metrics=args.metrics_port)
    extra: list[str] = []
    if args.grpc_tls_cert or args.grpc_tls_key or args.grpc_tls_client_ca:
        if not (args.grpc_tls_cert and args.grpc_tls_key):
            raise ConfigError("gRPC over TLS needs both --grpc-tls-cert and --grpc-tls-key")
        extra = grpc_tls_args(args.grpc_tls_cert, args.grpc_tls_key, args.grpc_tls_client_ca)
    server = EmbeddedServer(
        args.model_repository, ports, log_file=args.log_file, log_verbose=args.log_verbose, extra_args=extra
    )
    return serve_forever(server, stream_log=args.log_file is None)


def cmd_db(args: argparse.Namespace) -> int:
    from sqlalchemy import make_url

    from loadgen.storage import migrate

    shown = make_url(args.db).render_as_string(hide_password=True)  # never print a password
    if args.db_command == "upgrade":
        before = migrate.current_revision(args.db)
        migrate.upgrade(args.db)
        print(f"{shown}: schema {before or 'empty'} -> {migrate.current_revision(args.db)}")
    else:
        print(
            f"{shown}: schema {migrate.current_revision(args.db) or 'empty'} "
            f"(this loadgen needs {migrate.head_revision()})"
        )
    return EXIT_OK


# Further sub-commands live in loadgen/commands/<name>.py: register(sub) adds parsers whose
# defaults carry handler=<function(args) -> exit code>.
COMMAND_MODULES: tuple[str, ...] = ("tables", "report", "plan", "schedule", "export")
COMMANDS = {"serve": cmd_serve, "sweep": cmd_sweep, "runs": cmd_runs, "show": cmd_show, "db": cmd_db}


def _db_url(value: str) -> str:
    """``--db`` as a URL (a plain path is a SQLite file): a usage error when it is neither."""
    from loadgen.storage import db_url

    try:
        return db_url(value)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _fail(message: str, code: int) -> NoReturn:
    print(f"loadgen: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    from sqlalchemy.exc import OperationalError

    args = build_parser().parse_args(argv)
    logging.basicConfig(format="loadgen: %(message)s", level=logging.WARNING)
    try:
        handler = getattr(args, "handler", None) or COMMANDS[args.command]
        if isinstance(getattr(args, "db", None), str):
            args.db = _db_url(args.db)
        code: int = handler(args)
        return code
    except KeyboardInterrupt:
        print("loadgen: interrupted; finished steps are kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `loadgen runs | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except LoadgenError as exc:
        _fail(str(exc), exc.exit_code)
    except OperationalError as exc:  # the runs database is unreachable or refused the login
        _fail("runs database: " + " ".join(str(exc.orig or exc).split()), EXIT_USAGE)


if __name__ == "__main__":
    sys.exit(main())
