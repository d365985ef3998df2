"""``loadgen sweep``: the command line's side of a sweep.

Its sweep options are built from the option table (:mod:`loadgen.config.options`):
each is an argparse dest named by its key, with no default, so only what the user
gave reaches :func:`~loadgen.config.build_settings`. ``-m NAME:key=value,...`` adds a
model's own values over the shared ones, with the same keys. The sweep itself runs
through :func:`loadgen.launch.run_sweeps`, as plans and the scheduler do.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re
import sys
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from loadgen.commands import arguments
from loadgen.commands.shared import add_db_option, print_run, run_async
from loadgen.config import OPTIONS, SweepSettings, build_settings, option_key, spell_flag
from loadgen.config.scenarios import words
from loadgen.errors import ConfigError, SettingsError
from loadgen.storage import DEFAULT_DB_URL
from loadgen.tls import INSECURE_WARNING

if TYPE_CHECKING:
    from loadgen.engine.search import SearchResult
    from loadgen.runner import SweepOutcome
    from loadgen.server import EmbeddedServer

CLI_ONLY = {
    "csv": "writes a file beside the run; a plan's runs are read back with `loadgen show RUN --csv`",
    "report": "writes a file beside the run; `loadgen report` reads a plan's runs",
    "embedded": "starts a server for one command; a plan or a scheduler measures a server that is running",
    "model_repository": "goes with --embedded",
    "quiet": "`plan run -q` has it for the whole plan",
    "exporter_port": "`loadgen schedule --exporter-port` serves a plan's runs",
    "exporter_addr": "goes with --exporter-port",
    "db": "`plan run --db` and `schedule --db` store the whole plan in one database",
}
"""The sweep command's options that are not sweep settings, and why a plan does not take them."""

_GROUPS = {
    "server": "server",
    "load": "load (closed loop by default; open loop: --request-rate, --request-intervals or --ramp)",
    "measurement": "measurement (durations take units: 5s, 500ms, 2m)",
    "inputs": "inputs",
    "checks": "checking and labels",
    "TLS": "TLS (any of these, or -u https://..., turns TLS on)",
}
"""Help sections, in the order shown: what load, how it is measured, what is sent, where."""

EXAMPLES = """\
examples:
  loadgen sweep --embedded -m identity                  start the bundled CPU server, sweep, stop it
  loadgen sweep -m resnet --concurrency 1..64           closed loop at 1, 2, 4, ... 64 requests in flight
  loadgen sweep -m resnet --request-rate 100..1000:100  open loop: latency from each intended send time
  loadgen sweep -m resnet -p 10s -s 5 --max-windows 20  longer, stricter windows for a noisy machine
  loadgen sweep -m resnet --latency-limit p99=50ms --search
                                                        the highest load whose p99 stays under 50 ms
  loadgen sweep -m resnet -i http -u http://host:8000 --validate
                                                        over HTTP, every answer checked
  loadgen sweep -m a -m b:batch-size=4,concurrency=1..8 two models loaded at once, b with its own settings

after a sweep: `loadgen report RUN -o report.html`, `loadgen compare BASE NEW`, `loadgen runs`.
exit codes: 0 done, 1 a run failed, 2 usage or server unreachable, 3 wrong answers (--validate),
4 failed requests (--max-error-rate), 130 interrupted (finished steps are kept)."""


def add_sweep_options(parser: argparse.ArgumentParser, leave_out: Collection[str] = ()) -> None:
    """Every option of the table (but ``leave_out``'s keys), as flags whose dest is the option's key
    and whose default is None."""
    groups = {name: parser.add_argument_group(title) for name, title in _GROUPS.items()}
    shown = [o for o in OPTIONS if o.key not in leave_out]
    for option in sorted(shown, key=lambda o: list(_GROUPS).index(o.group)):
        group = groups[option.group]
        if option.switch:
            group.add_argument(
                *option.flags, dest=option.key, action="store_true", default=None, help=option.help
            )
        else:
            group.add_argument(
                *option.flags,
                dest=option.key,
                action="append" if option.repeat else "store",
                default=None,
                metavar=option.metavar,
                help=option.help,
                required=option.key == "model",
            )


def add_embedded_options(group: argparse._ActionsContainer, embedded_help: str) -> None:
    """``--embedded`` and its ``--model-repository`` (see :func:`embedded`)."""
    group.add_argument("--embedded", action="store_true", help=embedded_help)
    group.add_argument(
        "--model-repository",
        type=arguments.existing_folder,
        default=None,
        metavar="DIR",
        help="with --embedded: the model repository (default: the bundled model_repository/)",
    )


def register(sub: Any) -> None:
    """Add ``sweep`` to the CLI's sub-parsers."""
    sweep = sub.add_parser(
        "sweep",
        help="measure a model over a range of concurrency levels or request rates",
        usage="%(prog)s -m MODEL [--concurrency RANGE | --request-rate RANGE] [options]",
        description="Measure a model at each load level, store every step as it ends, print the table.",
        epilog=EXAMPLES,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, max_help_position=30),
    )
    add_sweep_options(sweep)
    server = next(g for g in sweep._action_groups if g.title == _GROUPS["server"])
    add_embedded_options(server, "start the embedded server on free ports for this run and stop it after")
    out = sweep.add_argument_group("output")
    out.add_argument(
        "--csv",
        type=arguments.output_file,
        default=None,
        metavar="FILE",
        help="also write perf_analyzer's -f CSV (+ our columns); runs are stored either way",
    )
    out.add_argument(
        "--report",
        type=arguments.output_file,
        default=None,
        metavar="FILE",
        help="also write the HTML report",
    )
    out.add_argument("-q", "--quiet", action="store_true", help="no live progress (rows and ETA)")
    out.add_argument(
        "--exporter-port",
        type=arguments.port,
        default=None,
        metavar="PORT",
        help="serve loadgen's own Prometheus metrics on this port while the sweep runs (e.g. 9108; "
        "default: none)",
    )
    out.add_argument(
        "--exporter-addr",
        default=None,
        metavar="ADDR",
        help="the address --exporter-port listens on (default 127.0.0.1, this machine only; "
        "0.0.0.0 for every interface, e.g. for a Prometheus in a container)",
    )
    add_db_option(out)
    sweep.set_defaults(handler=cmd_sweep)


# -- settings from the command line ---------------------------------------------------------------
_KEY = re.compile(r"[A-Za-z][\w-]*")


def parse_model_spec(item: str) -> tuple[str, dict[str, str | list[str]]]:
    """``NAME[:key=value,...]``: the model and its own option values (as text).

    A comma-separated piece without ``=`` continues the value before it, so lists keep
    their commas: ``-m b:concurrency=1,2,4,batch-size=2``.
    """
    name, _, rest = item.partition(":")
    if not name:
        raise ConfigError(f"bad -m {item!r}: expected MODEL or MODEL:key=value,...")
    pairs: list[list[str]] = []
    for piece in filter(None, rest.split(",")):
        key, sep, value = piece.partition("=")
        if sep and _KEY.fullmatch(key) and (option_key(key) is not None or not pairs):
            pairs.append([key, value])
        elif sep and _KEY.fullmatch(key):
            raise ConfigError(f"bad -m {item!r}: unknown option {key!r} (keys are sweep options: see --help)")
        elif pairs:
            pairs[-1][1] += "," + piece
        else:
            raise ConfigError(f"bad -m {item!r}: expected MODEL or MODEL:key=value,...")
    if any(option_key(key) == "model" for key, _ in pairs):
        raise ConfigError(f"bad -m {item!r}: the model is named before the ':'")
    given: dict[str, str | list[str]] = {}
    for key, value in pairs:  # a key given again adds to it: labels, shapes, headers, tolerances
        before = given.get(key)
        given[key] = value if before is None else [*([before] if isinstance(before, str) else before), value]
    return name, given


def _spelling(given: dict[str, str | list[str]], spell: Callable[[str], str]) -> Callable[[str], str]:
    """A key as the user wrote it in ``-m`` (when they did), else as its flag."""
    typed = {option_key(name): name for name in given}
    return lambda key: typed.get(key) or spell(key)


def given_values(args: argparse.Namespace) -> dict[str, object]:
    """The sweep options given on the command line, by key (the model aside)."""
    return {
        option.key: getattr(args, option.key)
        for option in OPTIONS
        if option.key != "model" and getattr(args, option.key, None) is not None
    }


def settings_from_args(
    args: argparse.Namespace, spell: Callable[[str], str] = spell_flag
) -> list[SweepSettings]:
    """One settings object per ``-m``, each through the one constructor; usage errors name flags
    (as ``spell`` spells an option's key: a command may give one another flag)."""
    shared = given_values(args)
    specs = [parse_model_spec(item) for item in args.model]
    try:
        build_settings(shared, {"model": specs[0][0]})  # the shared values, checked once
    except SettingsError as exc:
        raise ConfigError(exc.render(spell)) from None
    result = []
    for (name, own), item in zip(specs, args.model, strict=True):
        try:
            result.append(build_settings(shared, own, {"model": name}))
        except SettingsError as exc:
            raise ConfigError(f"bad -m {item!r}: {exc.render(_spelling(own, spell))}") from None
    if getattr(args, "embedded", False) and any(s.tls is not None for s in result):
        raise ConfigError("the embedded server speaks plain HTTP and gRPC: --ssl options need -u")
    return result


# -- running --------------------------------------------------------------------------------------
@contextlib.contextmanager
def embedded(
    args: argparse.Namespace, console: Console, extra_args: Sequence[str] = ()
) -> Iterator[EmbeddedServer]:
    """``--embedded``: the server on free ports (``--model-repository``'s) for this command."""
    from loadgen.server import EmbeddedServer, ServerPorts

    server = EmbeddedServer(args.model_repository, ServerPorts.free(), extra_args=extra_args)
    console.print(
        f"starting the embedded Triton server (HTTP {server.http_url}, gRPC {server.grpc_url}) ...",
        highlight=False,
    )
    with server:
        yield server


def on_server(sweeps: Sequence[SweepSettings], server: EmbeddedServer) -> list[SweepSettings]:
    """The sweeps pointed at the embedded server (its metrics too, unless turned off)."""
    return [
        dataclasses.replace(
            s,
            url=server.http_url if s.protocol == "http" else server.grpc_url,
            metrics_url="" if s.metrics_url == "" else server.metrics_url,
        )
        for s in sweeps
    ]


def cmd_sweep(args: argparse.Namespace) -> int:
    """Measure, store each step as it ends, print the tables; exit 1 failed run, 3 wrong answers."""
    from loadgen.launch import check_together, exit_status, grouped, run_repeats
    from loadgen.storage import RunStore

    sweeps = settings_from_args(args)  # usage errors before anything starts
    check_together(sweeps)
    if args.exporter_addr is not None and args.exporter_port is None:
        raise ConfigError("--exporter-addr goes with --exporter-port")
    if args.model_repository is not None and not args.embedded:
        raise ConfigError("--model-repository goes with --embedded (the server at -u has its own)")
    if any(s.tls is not None and s.tls.insecure for s in sweeps):  # off only when asked, and said so
        said = INSECURE_WARNING.format(ssl_insecure=spell_flag("ssl_insecure"))
        print(f"loadgen: warning: {said}", file=sys.stderr)
    err = Console(stderr=True)
    with contextlib.ExitStack() as stack:
        exporter = None
        if args.exporter_port is not None:  # before the server: a taken port fails fast
            from loadgen.exporter import SweepExporter

            exporter = stack.enter_context(SweepExporter(args.exporter_port, args.exporter_addr))
        if args.embedded:
            sweeps = on_server(sweeps, stack.enter_context(embedded(args, err)))
        sweeps = grouped(sweeps)
        store = stack.enter_context(RunStore(args.db))
        console = None if args.quiet else err
        repeats = run_async(run_repeats(sweeps, store, console=console, exporter=exporter))
    outcomes = repeats.outcomes
    every = [s for _ in repeats.rounds for s in sweeps]
    for settings, outcome in zip(every, outcomes, strict=True):
        print_run(args.db, outcome.run_id, _csv_path(args.csv, settings.model, len(sweeps)))
        if outcome.search is not None and settings.latency_limit is not None:
            print_search(outcome.search, settings)
    if repeats.group is not None:
        print_group(args.db, f"group:{repeats.group}", sweeps)
    if args.report is not None:
        from loadgen.commands.report import write_run_report

        write_run_report(args.db, [o.run_id for o in outcomes], args.report)
    warn_unanswered(outcomes)
    code = exit_status(outcomes, every)
    print_next_steps(args.db, outcomes, report_written=args.report is not None, group=repeats.group)
    return code


def print_group(db: str, ref: str, sweeps: Sequence[SweepSettings]) -> None:
    """``--repeats``: each model's levels across its runs, mean and 95% interval."""
    from analysis.groups import across_runs_table, load_group
    from analysis.tables import DEFAULT_PERCENTILES, format_table
    from loadgen.storage import RunStore

    with RunStore(db) as store:
        runs = load_group(store, ref)
    for sweep in sweeps:
        mine = [(run, steps) for run, steps in runs if run.model == sweep.model]
        print(f"\n{sweep.model}: each level across {len(mine)} runs (mean [95% interval], {ref})")
        column = words(sweep.scenario).column
        print(format_table(across_runs_table(mine, DEFAULT_PERCENTILES, 0.95, level_column=column)), end="")


def _csv_path(path: Path | None, model: str, count: int) -> Path | None:
    """``--csv out.csv``; with several models, ``out.<model>.csv`` each."""
    if path is None or count == 1:
        return path
    return path.with_name(f"{path.stem}.{model}{path.suffix}")


def print_next_steps(
    db: str, outcomes: Sequence[SweepOutcome], *, report_written: bool, group: str | None = None
) -> None:
    """Where the runs went and what to run next (on stderr: stdout keeps the tables), and what to
    do about steps that did not stabilise."""
    from sqlalchemy import make_url

    runs = [o for o in outcomes if o.run_id]
    if not runs:
        return
    ids = " ".join(str(o.run_id) for o in runs)
    shown_db = make_url(db).render_as_string(hide_password=True)
    stored = ", ".join(f"run {o.run_id} ({o.model})" for o in runs)
    print(f"loadgen: stored {stored} in {shown_db}", file=sys.stderr)
    db_flag = "" if db == DEFAULT_DB_URL else f" --db '{shown_db}'"
    if group is not None:
        print(f"loadgen: the runs are group:{group}", file=sys.stderr)
        ids = f"group:{group}"
        print(f"loadgen: next: loadgen table {ids}{db_flag}", file=sys.stderr)
    if not report_written:
        print(f"loadgen: next: loadgen report {ids} -o report.html{db_flag}", file=sys.stderr)
    unstable = [
        words("request_rate" if s.request_rate is not None else "concurrency").shown(
            s.request_rate if s.request_rate is not None else s.concurrency
        )
        for o in runs
        for s in o.steps
        if not s.stable and s.interrupted is None and s.request_count > 0
    ]
    if unstable:
        print(
            f"loadgen: {len(unstable)} step(s) did not stabilise ({', '.join(unstable[:6])}"
            f"{', ...' if len(unstable) > 6 else ''}): measure longer (-p), allow more windows "
            "(--max-windows) or a wider band (--stability-percentage)",
            file=sys.stderr,
        )


def warn_unanswered(outcomes: Sequence[SweepOutcome]) -> None:
    """One line per closed-loop step in which slots went unanswered for a whole window."""
    from analysis.findings import unanswered_text

    for outcome in outcomes:
        for step in outcome.steps:
            if step.unanswered_slots:
                level = f"run {outcome.run_id}, concurrency {step.concurrency}"
                text = unanswered_text(level, step.unanswered_slots, step.concurrency)
                print(f"loadgen: warning: {text}", file=sys.stderr)


def print_search(result: SearchResult, settings: SweepSettings) -> None:
    """The SLO search's answer: the highest load that met the limit, and the probes it took."""
    said = words(settings.scenario)
    unit, what = said.unit, said.short
    limit = settings.latency_limit
    probes = len(result.probes)
    if result.best is None:
        lowest = said.shown(min(settings.levels))
        print(f"SLO {limit}: even the lowest load ({lowest}) misses it ({probes} probe(s))")
    elif result.first_miss is None:
        print(f"SLO {limit}: met up to the top of the range ({said.shown(result.best)}); try a wider range")
    else:
        print(
            f"SLO {limit}: highest {what} meeting it: {result.best:g}{unit} "
            f"({result.first_miss:g}{unit} misses; {probes} probes)"
        )
