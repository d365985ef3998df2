"""``--repeats`` against the real server (issue 20): the runs stored as one group that the table,
compare, report and plans all take, each level's mean across the runs with its interval."""

from __future__ import annotations

import json
import re
from pathlib import Path

from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore
from tests.cli import loadgen, loadgen_here

QUICK = ("-p", "200ms", "--warmup", "100ms", "-s", "50", "--max-windows", "3", "--metrics-url", "off")


def test_repeated_runs_form_a_group_that_every_reader_takes(triton: EmbeddedServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    swept = loadgen(
        "sweep", "-m", "fixed_latency", "--concurrency", "2", "--repeats", "2", "-u", triton.grpc_url,
        *QUICK, "--db", db, "-q",
    )  # fmt: skip
    assert swept.returncode == 0, swept.stderr
    group = re.search(r"the runs are (group:[0-9a-f]+)", swept.stderr)
    assert group is not None, swept.stderr
    assert "fixed_latency: each level across 2 runs" in swept.stdout
    with RunStore(db) as store:
        runs = sorted(store.list_runs(), key=lambda r: r.id)
    assert [r.labels["repeat"] for r in runs] == ["1/2", "2/2"]
    assert {r.labels["repeats"] for r in runs} == {group[1].removeprefix("group:")}

    table = loadgen_here("table", group[1], "--db", db)
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith("| 2 |"))
    mean, low, high = map(float, re.findall(r"([0-9.]+) \[([0-9.]+), ([0-9.]+)\]", row)[0])
    assert low <= 1e3 / 10.1 * 1.02 and high >= 1e3 / 10.1 * 0.98 and low <= mean <= high  # ~99 infer/s

    compared = loadgen_here("compare", group[1], str(runs[0].id), "--json", "--db", db)
    assert compared.returncode == 0, compared.stderr
    verdict = json.loads(compared.stdout)
    assert verdict["verdict"] == "pass" and "Welch" in verdict["method"]
    assert verdict["base"]["group"] == group[1].removeprefix("group:")

    report = loadgen_here("report", group[1], "-o", str(tmp_path / "r.html"), "--db", db)
    assert report.returncode == 0 and (tmp_path / "r.html").stat().st_size > 0

    plan = tmp_path / "plan.yaml"  # its group of 2 against the sweep's group, its baseline by label
    plan.write_text(
        f"name: twice\nurl: {triton.grpc_url}\nmetrics_url: off\n"
        "measurement: {measurement_interval_ms: 200, warmup_ms: 100, stability_percentage: 50}\n"
        "jobs:\n  steady: {model: fixed_latency, concurrency: 2, repeats: 2, "
        f"baseline: {{label: repeats={runs[0].labels['repeats']}}}}}\n"
    )
    ran = loadgen("plan", "run", str(plan), "--db", db, "-q", "--json", str(tmp_path / "v.json"))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    (result,) = json.loads((tmp_path / "v.json").read_text())
    assert result["baseline_run_id"] == runs[-1].id  # the latest run of the labelled group
    assert "2 and 2 runs" in result["comparison"]["method"], result
