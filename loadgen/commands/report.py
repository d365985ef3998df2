"""``loadgen report``: stored runs as one self-contained HTML file (and optionally images)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadgen.commands import arguments
from loadgen.commands.shared import add_db_option, require_database
from loadgen.errors import EXIT_OK, EXIT_USAGE, ConfigError
from loadgen.storage import RunStore

if TYPE_CHECKING:
    from analysis.findings import Slo


def register(sub: Any) -> None:
    """Add the ``report`` sub-command to the ``loadgen`` parser."""
    parser = sub.add_parser(
        "report",
        help="write one self-contained HTML report of stored runs (several runs are overlaid)",
        description="Plots, latency table and findings of stored runs, in one HTML file that opens offline.",
    )
    parser.add_argument(
        "run_ids",
        type=arguments.run_ref,
        nargs="*",
        metavar="RUN",
        help="runs to report, in this order (group:ID: every run of a --repeats sweep)",
    )
    parser.add_argument("--latest", action="store_true", help="the newest stored run (of -m MODEL)")
    parser.add_argument(
        "--tune",
        type=arguments.text,
        default=None,
        metavar="TUNE_ID",
        help="a tune's runs, with its configurations, Pareto front and best config.pbtxt on top",
    )
    parser.add_argument(
        "-m", "--model", type=arguments.text, default=None, help="with --latest: the newest run of this model"
    )
    parser.add_argument(
        "-o", "--output", type=arguments.output_file, required=True, metavar="FILE", help="HTML file to write"
    )
    parser.add_argument(
        "--slo",
        default=None,
        metavar="[pNN=]TIME",
        help="latency objective, e.g. p99=50ms, p95=0.2s or 50ms (p99)",
    )
    parser.add_argument(
        "--images",
        type=arguments.output_folder,
        default=None,
        metavar="DIR",
        help="also write each figure as an image (needs kaleido)",
    )
    parser.add_argument(
        "--image-format", choices=["png", "svg"], default="png", help="with --images (default png)"
    )
    add_db_option(parser)
    parser.set_defaults(handler=cmd_report)


def _run_ids(store: RunStore, refs: Sequence[str], latest: bool, model: str | None) -> list[int]:
    from analysis.groups import run_ids_of

    run_ids = run_ids_of(store, refs)
    if model is not None and not latest:
        raise ConfigError("-m/--model goes with --latest (give run ids, or --latest -m MODEL)")
    if latest:
        if run_ids:
            raise ConfigError("give run ids or --latest, not both")
        runs = store.list_runs(model=model, limit=1)
        if not runs:
            raise ConfigError(
                "no stored runs" + (f" of model {model!r}" if model else "") + f" in {store.url}"
            )
        return [runs[0].id]
    if not run_ids:
        raise ConfigError("which runs? give run ids (see `loadgen runs`) or --latest")
    return list(dict.fromkeys(run_ids))


def write_run_report(
    db_url: str,
    run_ids: Sequence[int],
    output: Path,
    *,
    slo: Slo | None = None,
    images: Path | None = None,
    image_format: str = "png",
    tune: str | None = None,
) -> int:
    """Write the report of ``run_ids``; returns the exit code (2 when images were asked but not written).

    Runs that failed, were interrupted, are still running or have no steps are reported
    with what they have and marked as such in the report (and on stderr).
    """
    from analysis.finding_kinds import Kind, Severity
    from analysis.frames import read_run_data
    from analysis.report import ImageExportError, build_report, export_images, write_report
    from analysis.tune_result import load_tune

    if output.is_dir() or not output.parent.is_dir():
        raise ConfigError(f"cannot write the report to {output}: give a file in an existing directory")
    with RunStore(db_url) as store:
        runs = [read_run_data(store, run_id) for run_id in run_ids]
        tuned = None if tune is None else load_tune(store, tune)
    report = build_report(runs, slo=slo, tune=tuned)
    write_report(report, output)
    print(f"wrote {output} ({len(report.html) / 1e6:.1f} MB, {len(report.figures)} figures)", file=sys.stderr)
    for findings in report.findings.values():
        for finding in findings:
            if finding.kind in (Kind.STATUS, Kind.NO_STEPS) and finding.severity is not Severity.INFO:
                print(f"loadgen: note: {finding.text}", file=sys.stderr)
    if images is not None:
        try:
            written = export_images(report, images, "svg" if image_format == "svg" else "png")
        except ImageExportError as exc:
            print(f"loadgen: error: {exc}; the HTML report was written", file=sys.stderr)
            return EXIT_USAGE
        print(f"wrote {len(written)} image(s) to {images}", file=sys.stderr)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """The ``report`` handler: usage errors raise ConfigError (one line, exit 2)."""
    from analysis.findings import parse_slo

    slo = parse_slo(args.slo) if args.slo is not None else None
    require_database(args.db)
    with RunStore(args.db) as store:
        if args.tune is not None:
            run_ids = _tune_run_ids(store, args)
        else:
            run_ids = _run_ids(store, args.run_ids, args.latest, args.model)
    return write_run_report(
        args.db,
        run_ids,
        args.output,
        slo=slo,
        images=args.images,
        image_format=args.image_format,
        tune=args.tune,
    )


def _tune_run_ids(store: RunStore, args: argparse.Namespace) -> list[int]:
    from analysis.tune_result import tune_runs

    if args.run_ids or args.latest:
        raise ConfigError("--tune reports the tune's runs: give no run ids or --latest with it")
    return [run.id for run in tune_runs(store, args.tune)]
