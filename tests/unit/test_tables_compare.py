"""Benchmark tables, .hgrm spectra and run comparisons, on runs written by hand to a tmp SQLite store."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import (
    CompareError,
    Thresholds,
    Verdict,
    benchmark_table,
    compare_runs,
    format_hgrm,
    format_table,
    junit_xml,
    load_comparison,
    percentile_spectrum,
)
from loadgen.cli import main
from loadgen.commands.tables import parse_percent, parse_percentiles
from loadgen.errors import ConfigError
from loadgen.histogram import LatencyHistogram
from loadgen.results import RunInfo, RunStatus, StepResult
from loadgen.storage import RunStore

T0 = datetime(2024, 11, 28, 12, 0, 0, tzinfo=UTC)
DURATION_S = 10.0

Level = tuple[int, float, Sequence[float]]
"""(concurrency, throughput, latencies in microseconds) of one step."""


def latencies(scale: float = 1.0, seed: int = 0, n: int = 2000) -> list[float]:
    return [float(v) * scale for v in np.random.default_rng(seed).lognormal(8.0, 0.4, n)]


def step_result(index: int, level: Level, rate: float | None = None) -> StepResult:
    concurrency, throughput, values = level
    hist = LatencyHistogram()
    hist.record_many_us(values)
    return StepResult(
        index=index,
        concurrency=concurrency,
        started_at=T0,
        duration_s=DURATION_S,
        request_count=hist.count,
        inference_count=round(throughput * DURATION_S),
        histogram=hist,
        stable=True,
        window_count=3,
        request_rate=rate,
    )


def add_run(
    store: RunStore,
    levels: Sequence[Level],
    *,
    model: str = "identity",
    status: RunStatus | None = RunStatus.COMPLETED,
    rates: Sequence[float] | None = None,
    error: str | None = None,
) -> int:
    info = RunInfo(
        settings={},
        model=model,
        model_version="1",
        scenario="concurrency" if rates is None else "request_rate",
        server_url="localhost:8001",
        model_config={},
        model_metadata={},
        server_metadata={},
        host={},
        started_at=T0,
    )
    run_id = store.create_run(info)
    for i, level in enumerate(levels):
        store.add_step(run_id, step_result(i, level, None if rates is None else rates[i]))
    if status is not None:
        store.finish_run(run_id, status, error)
    return run_id


BASE: list[Level] = [
    (1, 1000.0, latencies(1.0, 1)),
    (2, 1800.0, latencies(1.1, 2)),
    (4, 2500.0, latencies(1.6, 3)),
]


def test_public_names_are_exported() -> None:
    for name in analysis.__all__:
        assert hasattr(analysis, name), name
    for name in ("benchmark_table", "format_table", "format_hgrm", "compare_runs", "junit_xml"):
        assert name in analysis.__all__


# -- tables ------------------------------------------------------------------------------------------


def test_benchmark_table_reads_percentiles_from_the_histograms(store: RunStore) -> None:
    steps = store.steps(add_run(store, BASE))
    # the summary columns are not what the table reads: spoil them
    spoiled = [dataclasses.replace(s, lat_p99_us=-1.0, lat_p90_us=-1.0, lat_avg_us=-1.0) for s in steps]
    table = benchmark_table(spoiled, scenario="concurrency")
    assert list(table.columns) == [
        "Concurrent requests",
        "Throughput (infer/s)",
        "Avg latency (ms)",
        "p50 latency (ms)",
        "p90 latency (ms)",
        "p95 latency (ms)",
        "p99 latency (ms)",
    ]
    assert table["Concurrent requests"].tolist() == [1, 2, 4]
    assert table["Throughput (infer/s)"].tolist() == pytest.approx([1000.0, 1800.0, 2500.0])
    for row, step in zip(table.itertuples(index=False), steps, strict=True):
        hist = step.histogram()
        assert row[2] == pytest.approx(hist.mean_us / 1000)
        assert row[3:] == tuple(hist.percentile_us(p) / 1000 for p in (50, 90, 95, 99))

    other = benchmark_table(steps, (50.0, 99.9), scenario="concurrency")
    assert list(other.columns)[3:] == ["p50 latency (ms)", "p99.9 latency (ms)"]
    assert other["p99.9 latency (ms)"].tolist() == [s.histogram().percentile_us(99.9) / 1000 for s in steps]
    with pytest.raises(ValueError, match="0..100"):
        benchmark_table(steps, (101.0,), scenario="concurrency")


def test_request_rate_runs_are_tabled_by_rate(store: RunStore) -> None:
    steps = store.steps(add_run(store, BASE[:2], rates=[250.0, 500.0]))
    table = benchmark_table(steps, scenario="request_rate")
    assert table.columns[0] == "Request rate (req/s)"
    assert table.iloc[:, 0].tolist() == [250.0, 500.0]


def test_markdown_csv_and_html(store: RunStore) -> None:
    run_id = add_run(store, [*BASE[:2], (8, 0.0, [])])  # the last step: no successful request
    table = benchmark_table(store.steps(run_id), scenario="concurrency")

    markdown = format_table(table, "markdown").splitlines()
    assert markdown[0].startswith("| Concurrent requests | Throughput (infer/s) | Avg latency (ms) |")
    assert markdown[1] == "|" + "|".join(["---:"] * 7) + "|"
    assert markdown[2].startswith("| 1 | 1,000.0 | ")
    assert markdown[4] == "| 8 | 0.0 | - | - | - | - | - |"
    assert len(markdown) == 5

    back = pd.read_csv(io.StringIO(format_table(table, "csv")))
    pd.testing.assert_frame_equal(back, table, check_dtype=False)

    html = ET.fromstring(format_table(table, "html"))  # well-formed, one <table>
    assert html.tag == "table" and "loadgen-table" in html.attrib["class"]
    cells = [td.text for td in html.iter("td")]
    assert cells[:2] == ["1", "1,000.0"] and cells[-1] == "-"
    with pytest.raises(ValueError, match="unknown table format"):
        format_table(table, "latex")  # type: ignore[arg-type]


def test_parse_percentiles_and_percent() -> None:
    assert parse_percentiles("50,99,99.9") == (50.0, 99.0, 99.9)
    assert parse_percentiles(" p99 , 50,50") == (50.0, 99.0)
    assert parse_percentiles("100") == (100.0,)
    for bad in ("", "abc", "50,,99", "101", "-1", "nan", "99;50"):
        with pytest.raises(ConfigError, match="bad percentiles"):
            parse_percentiles(bad)
    assert parse_percent("--x", "5%") == 5.0
    assert parse_percent("--x", " 12.5 ") == 12.5
    for bad in ("", "%", "five", "-5%", "inf"):
        with pytest.raises(ConfigError, match="bad --x"):
            parse_percent("--x", bad)


# -- .hgrm -------------------------------------------------------------------------------------------

# Java HdrHistogram 2.2.2's outputPercentileDistribution(out, 5, 1000.0) of the values 1..100 (us)
GOLDEN_HEAD = """\
       Value     Percentile TotalCount 1/(1-Percentile)

       0.001 0.000000000000          1           1.00
       0.010 0.100000000000         10           1.11
       0.020 0.200000000000         20           1.25
       0.030 0.300000000000         30           1.43
       0.040 0.400000000000         40           1.67
       0.050 0.500000000000         50           2.00
       0.055 0.550000000000         55           2.22
"""
GOLDEN_TAIL = """\
       0.099 0.989062500000         99          91.43
       0.100 0.990625000000        100         106.67
       0.100 1.000000000000        100
#[Mean    =        0.051, StdDeviation   =        0.029]
#[Max     =        0.100, Total count    =          100]
#[Buckets =           16, SubBuckets     =         2048]
"""


def parse_hgrm(text: str) -> tuple[list[tuple[float, float, int]], dict[str, float]]:
    """Rows (value ms, percentile, total count) and the footer's fields of an .hgrm text."""
    lines = text.splitlines()
    assert lines[0].split() == ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"] and lines[1] == ""
    rows = [(float(v), float(p), int(n)) for v, p, n, *_ in (line.split() for line in lines[2:-3])]
    footer: dict[str, float] = {}
    for line in lines[-3:]:
        assert line.startswith("#[") and line.endswith("]")
        for item in line[2:-1].split(","):
            key, value = item.split("=")
            footer[key.strip()] = float(value)
    return rows, footer


def test_hgrm_matches_hdrhistogram_output() -> None:
    hist = LatencyHistogram()
    hist.record_many_us(np.arange(1, 101))
    text = format_hgrm(hist)
    assert text.startswith(GOLDEN_HEAD)
    assert text.endswith(GOLDEN_TAIL)


def test_hgrm_matches_java_hdrhistogram_character_for_character() -> None:
    # data/hdrhistogram_java_skewed.hgrm: HdrHistogram 2.2.2 (Java), Histogram(1, 60_000_000, 3) of these
    # values, outputPercentileDistribution(out, 5, 1000.0); values < 2048 us sit in 1-us buckets, so the
    # exact max and mean we print are HdrHistogram's too. Its 0.999780273438 row checks half-up rounding.
    hist = LatencyHistogram()
    hist.record_many_us([float(1 + (2000 * ((i * 7919) % 30011) ** 4) // 30011**4) for i in range(30000)])
    expected = (Path(__file__).parent / "data" / "hdrhistogram_java_skewed.hgrm").read_text()
    assert "0.999780273438" in expected
    assert format_hgrm(hist) == expected


def test_hgrm_rows_are_the_histograms_percentiles() -> None:
    hist = LatencyHistogram()
    hist.record_many_us(latencies(seed=7, n=50_000))
    hist.record_many_us([-5.0, 70e6])  # out of range: counted at the exact min and max
    rows, footer = parse_hgrm(format_hgrm(hist))
    assert footer["Total count"] == hist.count == 50_002
    assert footer["Max"] == round(hist.max_us / 1000, 3)
    assert footer["Mean"] == round(hist.mean_us / 1000, 3)
    assert (footer["Buckets"], footer["SubBuckets"]) == (16, 2048)
    assert rows[-1] == (round(hist.max_us / 1000, 3), 1.0, hist.count)
    assert rows[0][0] == round(hist.min_us / 1000, 3)
    assert all(a[0] <= b[0] and a[1] < b[1] and a[2] <= b[2] for a, b in zip(rows, rows[1:], strict=False))
    for row in percentile_spectrum(hist)[:-1]:
        assert row.value_us == pytest.approx(hist.percentile_us(row.percentile * 100))
    # the levels halve their distance to 100% every 5 ticks: 0.1 steps, then 0.05, then 0.025 ...
    assert [r[1] for r in rows[:8]] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6])


def test_hgrm_of_one_value_and_of_nothing() -> None:
    one = LatencyHistogram()
    one.record_many_us([1500.0])
    rows, footer = parse_hgrm(format_hgrm(one))
    assert rows == [(1.5, 0.0, 1), (1.5, 1.0, 1)]
    assert footer["Total count"] == 1
    rows, footer = parse_hgrm(format_hgrm(LatencyHistogram()))
    assert rows == [] and footer["Total count"] == 0 and footer["Max"] == 0


# -- compare -----------------------------------------------------------------------------------------


def scaled(levels: Sequence[Level], throughput: float = 1.0, latency: float = 1.0) -> list[Level]:
    return [(c, t * throughput, [v * latency for v in values]) for c, t, values in levels]


def compare(
    store: RunStore, new: Sequence[Level], thresholds: Thresholds | None = None
) -> analysis.Comparison:
    return load_comparison(store, add_run(store, BASE), add_run(store, new), thresholds or Thresholds())


def test_a_run_compared_with_itself_passes_with_zero_deltas(store: RunStore) -> None:
    run_id = add_run(store, BASE)
    result = load_comparison(store, run_id, run_id)
    assert result.verdict is Verdict.PASS and not result.warnings
    assert [s.level for s in result.steps] == [1, 2, 4]
    for step in result.steps:
        assert step.throughput_change_pct == 0.0
        assert [d.percentile for d in step.latencies] == [50.0, 90.0, 95.0, 99.0]
        assert all(d.change_pct == 0.0 for d in step.latencies)


@pytest.mark.parametrize(
    ("throughput", "latency", "verdict"),
    [
        (0.90, 1.0, Verdict.REGRESSION),  # throughput -10% > 5%
        (0.96, 1.0, Verdict.PASS),  # -4%: within
        (1.0, 1.2, Verdict.REGRESSION),  # p99 +20% > 10%
        (1.0, 1.08, Verdict.PASS),
        (1.10, 1.0, Verdict.IMPROVEMENT),
        (1.0, 0.8, Verdict.IMPROVEMENT),
        (1.10, 1.2, Verdict.REGRESSION),  # a regression wins over an improvement
    ],
)
def test_verdicts(store: RunStore, throughput: float, latency: float, verdict: Verdict) -> None:
    result = compare(store, scaled(BASE, throughput, latency))
    assert result.verdict is verdict
    assert {s.verdict for s in result.steps} == {verdict}
    step = result.steps[0]
    assert step.throughput_change_pct == pytest.approx((throughput - 1) * 100)
    assert step.latency(99.0).change_pct == pytest.approx((latency - 1) * 100, abs=0.2)


def test_one_regressed_step_regresses_the_run_and_thresholds_apply(store: RunStore) -> None:
    new = [*BASE[:2], scaled(BASE[2:], throughput=0.93)[0]]
    result = compare(store, new)
    assert [s.verdict for s in result.steps] == [Verdict.PASS, Verdict.PASS, Verdict.REGRESSION]
    assert result.steps[2].reasons == ("throughput -7.0% (max drop 5%)",)
    assert result.verdict is Verdict.REGRESSION
    lenient = compare(store, new, Thresholds(max_throughput_drop_pct=8.0))
    assert lenient.verdict is Verdict.PASS


def test_the_gating_percentile_is_read_from_the_histograms(store: RunStore) -> None:
    # only the slowest 0.5% get 3x slower: p99 barely moves, p99.9 triples
    base = [(1, 1000.0, [1000.0] * 995 + [2000.0] * 5)]
    new = [(1, 1000.0, [1000.0] * 995 + [6000.0] * 5)]
    base_id, new_id = add_run(store, base), add_run(store, new)
    assert load_comparison(store, base_id, new_id).verdict is Verdict.PASS
    tail = load_comparison(store, base_id, new_id, Thresholds(percentile=99.9))
    assert tail.verdict is Verdict.REGRESSION
    assert [d.percentile for d in tail.steps[0].latencies] == [50.0, 90.0, 95.0, 99.0, 99.9]
    assert tail.steps[0].latency(99.9).change_pct == pytest.approx(200.0, abs=0.5)


def test_runs_that_cannot_be_compared(store: RunStore) -> None:
    base = add_run(store, BASE)
    other_model = add_run(store, BASE, model="fixed_latency")
    with pytest.raises(
        CompareError, match=r"run 1 is of model 'identity' and run 2 of 'fixed_latency'.*--force"
    ):
        load_comparison(store, base, other_model)
    forced = load_comparison(store, base, other_model, force=True)
    assert forced.verdict is Verdict.PASS
    assert forced.warnings == ("different models compared: identity (run 1), fixed_latency (run 2)",)

    disjoint = add_run(store, [(16, 1.0, [1.0]), (32, 1.0, [1.0])])
    with pytest.raises(CompareError, match=r"no load level in common \(run 1: 1, 2, 4; run 3: 16, 32\)"):
        load_comparison(store, base, disjoint)
    empty = add_run(store, [], status=RunStatus.FAILED, error="server lost")
    with pytest.raises(CompareError, match="run 4 has no steps to compare \\(failed: server lost\\)"):
        load_comparison(store, empty, base)
    rate = add_run(store, BASE[:1], rates=[1.0])
    with pytest.raises(CompareError, match="concurrency levels and run 5 request rates"):
        load_comparison(store, base, rate)


def test_unfinished_runs_are_compared_with_what_they_have_and_marked(store: RunStore) -> None:
    base = add_run(store, BASE)
    running = add_run(store, BASE[:2], status=None)
    result = load_comparison(store, base, running)
    assert result.verdict is Verdict.PASS
    assert result.only_in_base == (4.0,)
    assert result.warnings == (
        "run 2 is running: compared with its 2 finished step(s)",
        "levels only in run 1, not compared: 4",
    )
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["new"]["status"] == "running" and data["new"]["complete"] is False
    assert data["base"]["complete"] is True
    assert data["warnings"] == list(result.warnings)
    assert data["only_in_base"] == [4]


def test_json_of_a_regression(store: RunStore) -> None:
    new = scaled(BASE, latency=1.5)
    new[0] = (1, 0.0, [])  # nothing succeeded at concurrency 1
    zero_base = [(1, 0.0, []), *BASE[1:]]
    result = load_comparison(store, add_run(store, zero_base), add_run(store, new))
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))  # strict JSON: no NaN or Infinity
    assert data["verdict"] == "regression"
    assert data["thresholds"] == {
        "max_throughput_drop_pct": 5.0,
        "max_latency_rise_pct": 10.0,
        "percentile": 99.0,
    }
    first, second = data["steps"][:2]
    assert first["throughput"] == {"base": 0.0, "new": 0.0, "change_pct": 0.0}
    assert first["latency"]["p99"] == {"base_us": None, "new_us": None, "change_pct": None}
    assert first["verdict"] == "pass"
    assert second["verdict"] == "regression"
    assert second["reasons"][0].startswith("p99 latency +")
    assert second["latency"]["p99"]["change_pct"] == pytest.approx(50.0, abs=0.2)


def test_from_nothing_to_something_is_an_improvement(store: RunStore) -> None:
    result = load_comparison(store, add_run(store, [(1, 0.0, [])]), add_run(store, BASE[:1]))
    assert result.verdict is Verdict.IMPROVEMENT
    assert result.steps[0].throughput_change_pct == math.inf
    step = result.to_dict()["steps"][0]
    assert step["throughput"]["change_pct"] is None and step["latency"]["p99"]["base_us"] is None


def test_junit_has_a_testcase_per_step_and_a_failure_per_regression(store: RunStore) -> None:
    base = add_run(store, BASE)
    new = add_run(store, [BASE[0], *scaled(BASE[1:2], throughput=0.5), (8, 1.0, [1.0])])
    root = junit_xml(load_comparison(store, base, new))
    xml = ET.fromstring(ET.tostring(root))
    assert xml.tag == "testsuites" and xml.attrib["failures"] == "1" and xml.attrib["tests"] == "4"
    (suite,) = xml.findall("testsuite")
    assert suite.attrib["skipped"] == "2"
    props = {p.attrib["name"]: p.attrib["value"] for p in suite.iter("property")}
    assert props["verdict"] == "regression" and props["base_run"] == "1" and props["percentile"] == "99"
    cases = {c.attrib["name"]: c for c in suite.findall("testcase")}
    assert set(cases) == {"concurrency 1", "concurrency 2", "concurrency 4", "concurrency 8"}
    failure = cases["concurrency 2"].find("failure")
    assert failure is not None and failure.attrib["message"] == "throughput -50.0% (max drop 5%)"
    assert cases["concurrency 1"].find("failure") is None
    assert cases["concurrency 4"].find("skipped") is not None
    assert "levels only in run 2" in (suite.findtext("system-err") or "")


def test_thresholds_are_validated() -> None:
    with pytest.raises(ValueError, match="percentile"):
        Thresholds(percentile=0.0)
    with pytest.raises(ValueError, match="max_throughput_drop_pct"):
        Thresholds(max_throughput_drop_pct=-1.0)


def test_compare_runs_takes_plain_records(store: RunStore) -> None:
    run_id = add_run(store, BASE)
    run, steps = store.get_run(run_id), store.steps(run_id)
    assert compare_runs(run, steps, run, steps).verdict is Verdict.PASS


# -- the commands, in process ------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("loadgen: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_table_command(store: RunStore, url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = add_run(store, BASE)
    code, out, err = run_cli(capsys, "table", str(run_id), "--db", url)
    assert code == 0 and out.startswith("| Concurrent requests |") and err == ""
    code, out, _ = run_cli(
        capsys, "table", str(run_id), "--format", "csv", "--percentiles", "50,99.9", "--db", url
    )
    assert code == 0
    assert out.splitlines()[0] == (
        "Concurrent requests,Throughput (infer/s),Avg latency (ms),p50 latency (ms),p99.9 latency (ms)"
    )
    target = tmp_path / "step1.hgrm"
    code, out, err = run_cli(capsys, "table", str(run_id), "--hgrm", "1", "-o", str(target), "--db", url)
    assert code == 0 and out == "" and f"wrote {target}" in err
    assert target.read_text() == format_hgrm(store.steps(run_id)[1].histogram())


def test_table_command_errors(
    store: RunStore, url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = add_run(store, BASE, status=RunStatus.FAILED, error="server lost")
    empty = add_run(store, [], status=RunStatus.INTERRUPTED)
    cases = {
        ("table", "99"): "no run 99",
        ("table", str(empty)): f"run {empty} has no steps (interrupted)",
        ("table", str(run_id), "--percentiles", "50,abc"): "bad percentiles '50,abc'",
        ("table", str(run_id), "--hgrm", "7"): f"run {run_id} has no step 7: its steps are 0 (concurrency 1)",
        ("table", str(run_id), "--hgrm", "0", "--format", "csv"): "--hgrm writes one step's whole spectrum",
        ("table", str(run_id), "-o", str(tmp_path / "nope" / "t.md")): "cannot write",
    }
    for argv, message in cases.items():
        code, _, err = run_cli(capsys, *argv, "--db", url)
        assert code == 2, argv
        assert message in error_line(err), argv
    code, out, err = run_cli(capsys, "table", str(run_id), "--db", url)  # failed: shown, with a warning
    assert code == 0 and out.count("\n") == 5
    assert f"loadgen: warning: run {run_id} is failed: server lost: showing its 3 finished step(s)" in err


def test_compare_command(
    store: RunStore, url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = add_run(store, BASE)
    slower = add_run(store, scaled(BASE, latency=1.3))
    code, out, _ = run_cli(capsys, "compare", str(base), str(base), "--db", url)
    assert code == 0 and "verdict: pass" in out and "Concurrency" in out
    junit = tmp_path / "compare.xml"
    code, out, err = run_cli(capsys, "compare", str(base), str(slower), "--db", url, "--junit", str(junit))
    assert code == 1 and "verdict: regression (3 of 3 matched step(s) regressed)" in out
    assert ET.parse(junit).getroot().attrib["failures"] == "3"
    code, out, _ = run_cli(
        capsys, "compare", str(base), str(slower), "--db", url, "--max-latency-rise", "50%"
    )
    assert code == 0
    code, out, _ = run_cli(capsys, "compare", str(slower), str(base), "--db", url, "--json")
    assert code == 0 and json.loads(out)["verdict"] == "improvement"


def test_compare_command_errors(store: RunStore, url: str, capsys: pytest.CaptureFixture[str]) -> None:
    base = add_run(store, BASE)
    other = add_run(store, BASE, model="fixed_latency")
    empty = add_run(store, [], status=None)
    cases = {
        (str(base), "42"): "no run 42",
        (str(empty), str(base)): f"run {empty} has no steps to compare (running)",
        (str(base), str(other)): "pass --force",
        (str(base), str(base), "--max-throughput-drop", "five"): "bad --max-throughput-drop 'five'",
        (str(base), str(base), "--max-latency-rise=-3%"): "bad --max-latency-rise '-3%'",
        (str(base), str(base), "--percentile", "0"): "bad --percentile '0'",
        (str(base), str(base), "--percentile", "50,99"): "bad --percentile '50,99'",
    }
    for argv, message in cases.items():
        code, _, err = run_cli(capsys, "compare", *argv, "--db", url)
        assert code == 2, argv
        assert message in error_line(err), argv
