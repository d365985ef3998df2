"""The report of real runs: findings whose answer is known, and the HTML in a real headless
Chromium with every network route dead (plots must render from the file alone).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from analysis.finding_kinds import Kind, Severity
from analysis.findings import Slo, dominant_components, run_findings
from analysis.frames import load_run_data
from analysis.plots import throughput_latency_figure
from analysis.report import image_engine_available
from loadgen.cli import main
from loadgen.config import MeasurementSettings, SweepSettings
from loadgen.results import RunInfo, RunStatus
from loadgen.runner import execute_sweep
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore
from tests.cli import loadgen, loadgen_here

FAST = MeasurementSettings(measurement_interval_ms=500, warmup_ms=200, max_windows=3)
BROWSER_MISSING = "headless Chromium not installed (Debian: apt-get install chromium)"


@dataclass(frozen=True)
class Runs:
    db: str
    fixed: int
    identity: int
    failed: int
    running: int


def _settings(triton: EmbeddedServer, model: str, levels: tuple[int, ...], **labels: str) -> SweepSettings:
    return SweepSettings(
        model=model,
        levels=levels,
        url=triton.grpc_url,
        metrics_url=triton.metrics_url,
        measurement=FAST,
        labels=labels,
    )


@pytest.fixture(scope="module")
def runs(triton: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """fixed_latency and identity sweeps, plus a failed run keeping two steps and a run with none."""
    db = f"sqlite:///{tmp_path_factory.mktemp('report') / 'runs.db'}"
    with RunStore(db) as store:
        fixed = asyncio.run(execute_sweep(_settings(triton, "fixed_latency", (1, 2, 4)), store))
        identity = asyncio.run(execute_sweep(_settings(triton, "identity", (1, 4, 16), build="dev"), store))
        assert fixed.status is identity.status is RunStatus.COMPLETED
        record = store.get_run(fixed.run_id)
        info = RunInfo(
            settings=record.settings,
            model=record.model,
            model_version=record.model_version,
            scenario=record.scenario,
            server_url=record.server_url,
            model_config=record.model_config,
            model_metadata=record.model_metadata,
            server_metadata=record.server_metadata,
            host=record.host,
            started_at=record.started_at,
            labels={},
        )
        failed = store.create_run(info)
        for step in fixed.steps[:2]:
            store.add_step(failed, step)
        store.finish_run(failed, RunStatus.FAILED, "server lost mid-run: connection refused")
        running = store.create_run(info)
    return Runs(db, fixed.run_id, identity.run_id, failed, running)


def test_findings_of_a_single_server_queue(runs: Runs) -> None:
    """fixed_latency saturates at concurrency 1; then the queue holds (C - 1) x S of C x S."""
    data = load_run_data(runs.db, runs.fixed)
    found = run_findings(data.run, data.steps, Slo(10_000.0))
    throughput = data.steps["throughput"].tolist()
    (knee,) = [f for f in found if f.kind is Kind.KNEE]
    # A lone client adds its own round trip to S; only if that costs 5 % of S (a CPU-starved
    # machine) does concurrency 2 still gain 5 %, and the knee moves to the second step.
    if throughput[1] < 1.05 * throughput[0]:
        assert knee.step_index == 0 and "saturation knee at concurrency 1" in knee.text
    else:
        assert knee.step_index == 1, (throughput, knee)
    dominant = dominant_components(data.steps)
    assert dominant[0] == "compute_infer"  # one client: no queue, the model's 10 ms
    assert dominant[2] == "queue"  # 3 of 4 requests wait: queue ~ 30 ms vs infer ~ 10 ms
    # concurrency 2 is queueing theory's tie (queue ~ S ~ infer): either may win by a hair
    assert dominant[1] in ("queue", "compute_infer")
    queue, infer = data.steps.loc[1, ["server_queue_us", "server_compute_infer_us"]]
    assert queue == pytest.approx(infer, rel=0.5)
    # one finding per stretch of loads with the same bottleneck; the hint reads the served config
    # (max_batch_size 8, no dynamic_batching, one instance) where the queue dominates
    said = [f for f in found if f.kind is Kind.DOMINANT]
    parts = list(dominant.values())
    assert [f.component for f in said] == [c for i, c in enumerate(parts) if i == 0 or c != parts[i - 1]]
    assert said[-1].component == "queue" and said[-1].step_index == 2
    hint = "dynamic batching is off: enable it (the model takes batches up to 8) or add instances (now 1)"
    assert hint in said[-1].text
    (slo,) = [f for f in found if f.kind is Kind.SLO]
    assert slo.severity is Severity.INFO and slo.step_index == throughput.index(max(throughput))
    # the model holds every request at least S / 2 = 5 ms: a 1 ms objective is out of reach
    (slo,) = [f for f in run_findings(data.run, data.steps, Slo(1.0)) if f.kind is Kind.SLO]
    assert slo.severity is Severity.WARNING and "no error-free step meets p99 <= 1 ms" in slo.text
    assert not [f for f in found if f.kind in (Kind.ERRORS, Kind.STATUS, Kind.STATS_MISSING)]


# -- the HTML in a browser -----------------------------------------------------------------------------
class _Page(HTMLParser):
    """Figures (Plotly divs) and which of them hold a rendered ``svg.main-svg``; external URLs; scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: list[str] = []
        self.rendered: set[str] = set()
        self.external: list[str] = []
        self.script_sizes: list[int] = []
        self.script_src: list[str] = []
        self._open: list[tuple[str, int]] = []  # (figure id, div depth)
        self._depth = 0
        self._script: int | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {name: value or "" for name, value in attrs}
        for name, value in attr.items():
            if name in ("src", "href", "xlink:href", "action", "poster", "data") and re.match(
                r"\s*(https?:)?//", value, re.IGNORECASE
            ):
                self.external.append(f"<{tag} {name}={value}>")
        classes = attr.get("class", "").split()
        if tag == "div":
            self._depth += 1
            if "plotly-graph-div" in classes:
                self.figures.append(attr["id"])
                self._open.append((attr["id"], self._depth))
        elif tag == "svg" and "main-svg" in classes and self._open:
            self.rendered.add(self._open[-1][0])
        elif tag == "script":
            self._script = 0
            if "src" in attr:
                self.script_src.append(attr["src"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "div":
            if self._open and self._open[-1][1] == self._depth:
                self._open.pop()
            self._depth -= 1
        elif tag == "script" and self._script is not None:
            self.script_sizes.append(self._script)
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script += len(data)


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("LOADGEN_REQUIRE_BROWSER"):  # CI: a missing browser is a failure, not a skip
        pytest.fail(BROWSER_MISSING)
    pytest.skip(BROWSER_MISSING)


@dataclass(frozen=True)
class Rendered:
    dom: str
    screenshot: Path
    page_requests: list[str]


def _render_offline(html_file: Path, work: Path) -> Rendered:
    """Load the file in headless Chromium whose every proxied request goes to a dead port."""
    browser = _chromium()
    screenshot, net_log = work / "screenshot.png", work / "net-log.json"
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={work / 'profile'}",
            "--proxy-server=127.0.0.1:9",  # the discard port: nothing listens, every fetch fails
            "--proxy-bypass-list=<-loopback>",
            f"--log-net-log={net_log}",
            "--virtual-time-budget=15000",
            "--window-size=1400,3000",
            f"--screenshot={screenshot}",
            "--dump-dom",
            html_file.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    events = json.loads(net_log.read_text())["events"]
    # Requests the page made carry its origin as initiator; the browser's own ("not an origin")
    # are background services that the flags above could not all switch off.
    page_requests = [
        e["params"]["url"]
        for e in events
        if "url" in e.get("params", {}) and e["params"].get("initiator", "not an origin") != "not an origin"
    ]
    return Rendered(result.stdout, screenshot, page_requests)


def test_report_of_several_runs_renders_offline_in_chromium(runs: Runs, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    ids = [str(i) for i in (runs.fixed, runs.identity, runs.failed, runs.running)]
    result = loadgen_here("report", *ids, "-o", str(out), "--slo", "p99=50ms", "--db", runs.db)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"run {runs.failed} failed: server lost mid-run" in result.stderr
    assert f"run {runs.running} is still running" in result.stderr
    assert f"run {runs.running} has no finished step" in result.stderr

    html = out.read_text(encoding="utf-8")
    source = _parse(html)
    assert source.external == []  # no CDN, no MathJax, no fonts
    assert source.script_src == []
    assert sum(size > 1_000_000 for size in source.script_sizes) == 1  # plotly.js inlined exactly once
    # overlay + (breakdown, batching, server metrics, distribution) for each run with steps
    assert len(source.figures) == 1 + 3 * 4
    assert "status-failed" in html and "status-running" in html
    assert "saturation knee at concurrency" in html
    assert "best throughput with p99 &lt;= 50 ms" in html

    rendered = _render_offline(out, tmp_path)
    dom = _parse(rendered.dom)
    assert dom.figures == source.figures
    assert set(dom.figures) == dom.rendered, f"not rendered: {set(dom.figures) - dom.rendered}"
    assert rendered.page_requests == []

    with Image.open(rendered.screenshot) as image:
        rgb = image.convert("RGB")
        assert rgb.size == (1400, 3000)
        below_header = rgb.crop((0, 1000, 1400, 3000))
        colors = below_header.getcolors(maxcolors=1 << 20)
        assert colors is not None and len(colors) > 200, "the plots area is (nearly) blank"
        assert max(count for count, _ in colors) < 0.9 * 1400 * 2000


def test_sweep_writes_its_report(triton: EmbeddedServer, tmp_path: Path) -> None:
    db, out = f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "sweep.html"
    result = loadgen(
        *("sweep", "-m", "identity", "-u", triton.grpc_url, "--metrics-url", triton.metrics_url),
        *("--concurrency", "2", "-p", "500", "--warmup", "200", "-r", "3", "-q"),
        *("--db", db, "--report", str(out)),
    )
    assert result.returncode == 0, result.stderr
    page = _parse(out.read_text(encoding="utf-8"))
    assert len(page.figures) >= 4 and page.external == []


def test_image_export_or_a_one_line_reason(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, images = tmp_path / "r.html", tmp_path / "images"
    code = main(["report", str(runs.fixed), "-o", str(out), "--images", str(images), "--db", runs.db])
    err = capsys.readouterr().err
    assert out.exists() and "Traceback" not in err
    if image_engine_available():
        assert code == 0, err
        assert sorted(p.suffix for p in images.iterdir()) == [".png"] * 5
    else:
        assert code == 2
        (line,) = [line for line in err.splitlines() if line.startswith("loadgen: error:")]
        assert "pip install kaleido" in line and "the HTML report was written" in line


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("loadgen: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_report_usage_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", f"sqlite:///{tmp_path / 'empty.db'}"]
    out = ["-o", str(tmp_path / "r.html")]
    assert "no runs database" in _usage_error(["report", "--latest", *out, *db], capsys)  # never created
    with RunStore(db[1]):
        pass  # an empty database, as a sweep that stored nothing leaves it
    assert "give run ids" in _usage_error(["report", *out, *db], capsys)
    assert "no stored runs" in _usage_error(["report", "--latest", *out, *db], capsys)
    assert "of model 'x'" in _usage_error(["report", "--latest", "-m", "x", *out, *db], capsys)
    assert "-m/--model goes with --latest" in _usage_error(["report", "1", "-m", "x", *out, *db], capsys)
    assert "not both" in _usage_error(["report", "1", "--latest", *out, *db], capsys)
    assert "no run 3" in _usage_error(["report", "3", *out, *db], capsys)
    assert "bad --slo" in _usage_error(["report", "1", "--slo", "fast", *out, *db], capsys)
    missing_dir = ["-o", str(tmp_path / "nowhere" / "r.html")]
    with RunStore(db[1]) as store:
        store.create_run(_info())
    assert "does not exist" in _usage_error(["report", "1", *missing_dir, *db], capsys)


def _info() -> RunInfo:
    empty: dict[str, Any] = {}
    return RunInfo(
        settings=empty,
        model="m",
        model_version="1",
        scenario="concurrency",
        server_url="localhost:8001",
        model_config=empty,
        model_metadata=empty,
        server_metadata=empty,
        host=empty,
        started_at=datetime.now(UTC),
        labels={},
    )


def test_each_step_stores_intervals_and_the_throughputs_hold_the_known_rate(
    runs: Runs, capsys: pytest.CaptureFixture[str]
) -> None:
    """fixed_latency completes one request per S + slack (10.1 ms) once saturated: the stored
    throughput interval of every saturated step holds that rate; ``table --ci`` shows them."""
    with RunStore(runs.db) as store:
        steps = store.steps(runs.fixed)
        intervals = store.step_intervals(runs.fixed)
    rate = 1e6 / (10_000 + 100)
    for step in steps[1:]:  # concurrency 2 and 4: saturated
        (throughput,) = [i for i in intervals[step.id] if i.measure == "throughput"]
        assert throughput.low is not None and throughput.high is not None
        assert throughput.low <= rate <= throughput.high, (step.concurrency, throughput)
        assert throughput.n_eff == 10 * step.window_count or throughput.n_eff == 30
        p50 = next(i for i in intervals[step.id] if i.measure == "latency" and i.percentile == 50)
        assert p50.low is not None and p50.high is not None and step.lat_p50_us is not None
        assert p50.low <= step.lat_p50_us <= p50.high
    assert main(["table", str(runs.fixed), "--ci", "--percentiles", "50,99.9", "--db", runs.db]) == 0
    shown = capsys.readouterr().out
    assert re.search(r"\| 2 \| [0-9.]+ \[[0-9.]+, [0-9.]+\] \|", shown), shown
    assert "[too few requests]" in shown  # p99.9 of a few hundred requests
    assert main(["table", str(runs.fixed), "--ci", "--format", "csv", "--db", runs.db]) == 0
    header = capsys.readouterr().out.splitlines()[0].split(",")
    assert header[-3:] == ["Throughput low (infer/s)", "Throughput high (infer/s)", "p99 early stopping (ms)"]
    assert header.index("p50 low (ms)") > header.index("p99 latency (ms)")  # after the existing columns
    figure = throughput_latency_figure([load_run_data(runs.db, runs.fixed)])
    p50 = next(trace for trace in figure.data if trace.name == "p50 latency")
    below, above = np.asarray(p50.error_y.arrayminus), np.asarray(p50.error_y.array)
    assert len(below) == 3 and (below >= 0).all() and (above > 0).any()  # each step's interval, drawn
    p99 = next(trace for trace in figure.data if trace.name == "p99 latency")
    assert np.isfinite(np.asarray(p99.error_x.array)).all()  # the throughput's, on the labelled line
