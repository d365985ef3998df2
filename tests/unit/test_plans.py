"""Plans without a server: validation messages with their lines, defaults, baseline resolution."""

from __future__ import annotations

import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loadgen.cron import describe, next_fire
from loadgen.errors import ConfigError
from loadgen.plans import Baseline, PlanError, load_plan, parse_plan, resolve_baseline
from loadgen.results import RunStatus
from loadgen.storage import RunRecord

REPO = Path(__file__).resolve().parents[2]


def problems(text: str, path: str = "plans/p.yaml") -> list[str]:
    with pytest.raises(PlanError) as info:
        parse_plan(textwrap.dedent(text), path)
    return [str(p) for p in info.value.problems]


def test_the_shipped_example_plan_is_valid() -> None:
    plan = load_plan(REPO / "plans" / "nightly.yaml")
    assert plan.name == "nightly"
    models = {sweep.model for job in plan.jobs for sweep in job.sweeps}
    assert models == {"identity", "fixed_latency"}
    assert all(s.url == "localhost:8001" for job in plan.jobs for s in job.sweeps)
    assert all(job.cron for job in plan.jobs)


def test_the_shipped_precision_plan_expands_its_matrix() -> None:
    plan = load_plan(REPO / "plans" / "precision.yaml")
    assert [job.name for job in plan.jobs] == ["precision[model=rnxt]", "precision[model=rnxt_fp16]"]
    assert all(job.matrix == "precision" and job.sweeps[0].levels == (1, 2, 4, 8) for job in plan.jobs)


def test_unknown_key_names_line_job_and_the_likely_key() -> None:
    text = """\
        name: nightly
        jobs:
          identity-c:
            model: identity
            concurency: 1..4
        """
    assert problems(text, "plans/nightly.yaml") == [
        "plans/nightly.yaml:5: unknown key 'concurency' in job 'identity-c' (did you mean 'concurrency'?)"
    ]


def test_every_problem_is_listed_in_file_order() -> None:
    text = """\
        schedul: "0 2 * * *"
        thresholds:
          max_throughput_drop: lots
          percentile: 101
        measurement:
          measurement_interval_ms: 10
        jobs:
          a:
            models: [identity, identity]
            concurrency: 256..1
            schedule: "61 * * * *"
            input_data: missing.json
            baseline: yesterday
            labels: {plan: x}
          b:
            concurrency: 4
            request_rate: 10
            batch_size: 0
          b:
            model: x
        """
    found = problems(text)
    expected = [
        (1, "unknown key 'schedul' in the plan (did you mean 'schedule'?)"),
        (3, "max_throughput_drop must be a percentage >= 0"),
        (4, "percentile must be within (0, 100]"),
        (6, "the plan: measurement_interval_ms must be at least 50 ms, got 10"),
        (9, "job 'a': a model is listed twice"),
        (10, "job 'a': concurrency: bad range '256..1'"),
        (11, "job 'a': bad schedule '61 * * * *'"),
        (12, "job 'a': input_data must be random, zero, a data file or a directory"),
        (13, "job 'a': bad baseline 'yesterday'"),
        (14, "job 'a': label 'plan' is set by the plan itself"),
        (15, "job 'b': give either model or models"),
        (17, "job 'b': give only one of concurrency, request_rate, request_intervals and ramp"),
        (18, "job 'b': batch_size must be >= 1, got 0"),
        (19, "jobs: 'b' is given twice (first at line 15)"),
    ]
    assert len(found) == len(expected), found
    for line, (number, fragment) in zip(found, expected, strict=True):
        assert line.startswith(f"plans/p.yaml:{number}: "), line
        assert fragment in line, line


@pytest.mark.parametrize(
    ("job", "fragment"),
    [
        ("concurrency: 0..4", "levels start at 1"),
        ("concurrency: 1.5", "whole numbers"),
        ("request_rate: abc", "bad range 'abc'"),
        ("distribution: poisson", "distribution applies to request_rate and ramp only"),
        ("schedule: '0 2 * *'", "bad schedule '0 2 * *'"),
        ("schedule: '0 0 2 * * * *'", "bad schedule"),
        ("thresholds: {max_latency_rise: -5%}", "max_latency_rise must be a percentage >= 0"),
        ("thresholds: {percentile: p0}", "percentile must be within (0, 100]"),
        ("thresholds: {max_drop: 5%}", "unknown key 'max_drop' in thresholds of job 'j'"),
        ("measurement: {max_trials: 0}", "max_trials must be >= 1, got 0"),
        ("measurement: {warmup_ms: soon}", "warmup_ms must be a duration such as 2s or 500ms"),
        ("protocol: udp", "protocol must be grpc or http"),
        ("request_intervals: gaps.txt", "request_intervals: cannot read request intervals"),
        ("baseline: 0", "run ids start at 1"),
        ("baseline: {label: release}", "bad baseline label 'release': expected KEY=VALUE"),
        ("baseline: {run: 3, label: a=b}", "baseline needs exactly one of 'label' and 'run'"),
        ("shapes: {TOKENS: 'x'}", "bad shape"),
        ("batch_size: [1, 2]", "batch_size must be a single value, not a list"),
        ("metrics_url: [a]", "metrics_url must be a single value, not a list"),
        ("validate: maybe", "validate must be true or false, got 'maybe'"),
        ("workers: 0", "workers must be within 1..256, got 0"),
        ("grpc_client: grpcio", "grpc_client must be h2 or aio, got 'grpcio'"),
        ("request_timeout: -1", "request_timeout must be a number of seconds >= 0"),
        ("request_timeout: soon", "request_timeout must be a duration such as 2s or 500ms"),
    ],
)
def test_one_bad_value_is_reported_at_its_line(job: str, fragment: str) -> None:
    text = f"jobs:\n  j:\n    model: identity\n    {job}\n"
    found = problems(text)
    assert len(found) == 1, found
    assert found[0].startswith("plans/p.yaml:4: "), found
    assert fragment in found[0], found


def test_unquoted_cron_gets_a_hint_and_yaml_errors_have_lines() -> None:
    found = problems("jobs:\n  j:\n    model: identity\n    schedule: */5 * * * *\n")
    assert found[0].startswith("plans/p.yaml:4: not valid YAML"), found
    assert "quote cron expressions" in found[0]
    assert problems("") == ["plans/p.yaml:1: the plan is empty: it needs at least 'jobs'"]
    assert problems("name: x\n") == ["plans/p.yaml:1: the plan has no 'jobs'"]
    assert problems("- a\n- b\n")[0].endswith("the plan must be a mapping of keys to values")


def test_plan_defaults_merge_into_jobs_and_jobs_win(tmp_path: Path) -> None:
    (tmp_path / "data.json").write_text('{"data": [{"INPUT0": [1]}]}')
    text = """\
        name: nightly
        url: example:9001
        schedule: "*/10 * * * * *"
        baseline: {label: "release=1.2,env=prod"}
        thresholds: {max_throughput_drop: 5%, percentile: 99}
        measurement: {measurement_interval_ms: 500, max_trials: 4}
        labels: {suite: nightly, release: 1.10}
        jobs:
          a:
            model: identity
            concurrency: 1:16:4
            grpc_client: aio
            request_timeout: 2.5
          b:
            models: [identity, fixed_latency]
            request_rate: 0.5..2
            distribution: poisson
            protocol: http
            url: example:9000
            input_data: data.json
            baseline: previous
            schedule: "0 2 * * 1-5"
            thresholds: {max_latency_rise: 20, percentile: p95}
            measurement: {max_trials: 6}
            labels: {suite: weekly}
            metrics_url: off
        """
    plan = parse_plan(textwrap.dedent(text), tmp_path / "p.yaml")
    a, b = plan.jobs
    (sweep,) = a.sweeps
    assert sweep.levels == (1, 5, 9, 13, 16)  # read as written: YAML 1.1 would make 1:16:4 an integer
    assert sweep.url == "example:9001" and sweep.protocol == "grpc"
    assert sweep.labels == {"suite": "nightly", "release": "1.10", "plan": "nightly", "job": "a"}
    assert sweep.measurement.measurement_interval_ms == 500 and sweep.measurement.max_windows == 4
    assert a.cron == "*/10 * * * * *"
    assert sweep.grpc_client == "aio" and sweep.request_timeout_s == 2.5
    assert b.sweeps[0].grpc_client == "h2" and b.sweeps[0].request_timeout_s == 30.0
    assert a.baseline == Baseline("label", labels=(("release", "1.2"), ("env", "prod")))
    assert (a.thresholds.max_throughput_drop_pct, a.thresholds.max_latency_rise_pct) == (5.0, 10.0)
    assert [s.model for s in b.sweeps] == ["identity", "fixed_latency"]
    assert b.sweeps[0].scenario == "request_rate" and b.sweeps[0].levels == (0.5, 1.0, 2.0)
    assert b.sweeps[0].distribution == "poisson" and b.sweeps[0].protocol == "http"
    assert b.sweeps[0].input_data == str(tmp_path / "data.json")  # relative to the plan's folder
    assert b.sweeps[0].labels["suite"] == "weekly" and b.sweeps[0].labels["job"] == "b"
    assert b.sweeps[0].measurement.measurement_interval_ms == 500 and b.sweeps[0].measurement.max_windows == 6
    assert b.baseline == Baseline() and b.cron == "0 2 * * 1-5"
    assert sweep.metrics_url is None and sweep.resolved_metrics_url == "http://example:8002/metrics"
    assert b.sweeps[0].metrics_url == "" and b.sweeps[0].resolved_metrics_url is None
    assert (b.thresholds.max_throughput_drop_pct, b.thresholds.max_latency_rise_pct) == (5.0, 20.0)
    assert b.thresholds.percentile == 95.0
    assert plan.select(["b"]) == (b,)


def test_plan_name_defaults_to_the_file_name_and_concurrency_to_1() -> None:
    plan = parse_plan("jobs:\n  j: {model: identity, baseline: 12}\n", "plans/smoke.yaml")
    assert plan.name == "smoke"
    assert plan.jobs[0].sweeps[0].levels == (1,)
    assert plan.jobs[0].baseline == Baseline("run", run_id=12)
    assert plan.jobs[0].cron is None


def _run(
    run_id: int, *, model: str = "identity", status: RunStatus = RunStatus.COMPLETED, **labels: str
) -> RunRecord:
    return RunRecord(
        id=run_id,
        model=model,
        model_version="1",
        scenario="concurrency",
        status=status,
        error=None,
        server_url="localhost:8001",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        ended_at=None,
        settings={},
        model_config={},
        model_metadata={},
        server_metadata={},
        host={},
        labels=dict(labels),
        step_count=2,
    )


def _resolve(baseline: Baseline, runs: list[RunRecord]) -> int | None:
    """Run 9 of job 'a' (plan 'nightly', model identity) is the new run."""
    return resolve_baseline(baseline, runs, plan="nightly", job="a", model="identity", new_run_id=9)


def test_previous_is_the_latest_earlier_completed_run_of_the_same_plan_job_and_model() -> None:
    runs = [  # newest first, as RunStore.list_runs returns them
        _run(9, plan="nightly", job="a"),  # the new run itself
        _run(8, plan="nightly", job="a", status=RunStatus.FAILED),
        _run(7, plan="nightly", job="b"),
        _run(6, plan="weekly", job="a"),
        _run(5, plan="nightly", job="a", model="fixed_latency"),
        _run(4, plan="nightly", job="a"),
        _run(3, plan="nightly", job="a"),
    ]
    assert _resolve(Baseline(), runs) == 4
    assert _resolve(Baseline(), runs[-1:]) == 3
    assert _resolve(Baseline(), runs[:4]) is None  # first run: no baseline yet


def test_label_and_run_baselines() -> None:
    runs = [
        _run(9, plan="nightly", job="a", release="1.2"),  # the new run: never its own baseline
        _run(8, release="1.3"),
        _run(7, release="1.2", env="dev"),
        _run(6, release="1.2", env="prod", model="fixed_latency"),
        _run(5, release="1.2", env="prod", status=RunStatus.INTERRUPTED),
        _run(4, release="1.2", env="prod"),
    ]
    assert _resolve(Baseline("label", labels=(("release", "1.2"),)), runs) == 7
    assert _resolve(Baseline("label", labels=(("release", "1.2"), ("env", "prod"))), runs) == 4
    assert _resolve(Baseline("label", labels=(("release", "2.0"),)), runs) is None
    assert _resolve(Baseline("run", run_id=8), runs) == 8


def test_cron_with_seconds_fires_on_the_second() -> None:
    now = time.time()
    first = next_fire("*/2 * * * * *", now)
    assert now < first <= now + 2 and first == int(first) and int(first) % 2 == 0
    assert next_fire("*/2 * * * * *", first) == first + 2
    daily = next_fire("0 2 * * *", now)
    assert now < daily <= now + 86400 + 3600  # a DST change may add an hour


def test_scheduler_log_line_names_job_run_and_verdict() -> None:
    from loadgen.plans import JobResult

    line = describe(JobResult("p", "a", "identity", "regression", run_id=5, baseline_id=4, note="slow"))
    assert line == "job a model identity run 5: regression vs run 4 (slow)"
    assert (
        describe(JobResult("p", "a", "identity", "error", note="down"))
        == "job a model identity no run: error (down)"
    )


def test_deployment_examples_run_a_valid_plan() -> None:
    import configparser

    import yaml

    manifests = list(yaml.safe_load_all((REPO / "docker" / "k8s-cronjob.yaml").read_text()))
    by_kind = {m["kind"]: m for m in manifests}
    assert set(by_kind) == {"ConfigMap", "PersistentVolumeClaim", "CronJob"}
    plan = parse_plan(by_kind["ConfigMap"]["data"]["nightly.yaml"], "configmap.yaml")
    assert plan.jobs
    cron = by_kind["CronJob"]["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    (container,) = cron["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"][:3] == ["plan", "run", "/plans/nightly.yaml"]
    for name, section in (("loadgen-schedule.service", "Service"), ("loadgen-schedule.timer", "Timer")):
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.read_string((REPO / "docker" / name).read_text())
        assert unit.has_section(section), name
        # systemd has no trailing comments: a '#' inside a value would become part of it
        assert not any("#" in value for s in unit.sections() for value in unit[s].values()), name
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.read_string((REPO / "docker" / "loadgen-schedule.service").read_text())
    assert " plan run " in service["Service"]["ExecStart"]


def test_the_readme_plan_example_is_valid() -> None:
    import re

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Plans and scheduling") :]
    match = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert match is not None
    plan = parse_plan(match[1], REPO / "plans" / "readme.yaml")
    assert [job.name for job in plan.jobs] == ["identity-c", "fixed-latency-release"]
    assert plan.jobs[1].thresholds.max_latency_rise_pct == 20.0


def test_job_keys_at_plan_level_say_where_they_belong() -> None:
    text = "model: identity\nbatch: 2\njobs:\n  j: {model: identity, seed: !!python/none x}\n"
    assert problems(text) == [
        "plans/p.yaml:1: unknown key 'model' in the plan (model belongs in each job)",
        "plans/p.yaml:2: unknown key 'batch' in the plan (did you mean 'batch_size'?)",
        "plans/p.yaml:4: job 'j': seed must be a whole number, got 'x'",
    ]


def test_a_matrix_expands_into_one_job_per_combination() -> None:
    text = """\
        url: h:8001
        jobs:
          precision:
            matrix:
              model: [rnxt, rnxt_fp16]
              batch_size: [1, 8]
            concurrency: 1..4
          alone:
            model: identity
        """
    plan = parse_plan(textwrap.dedent(text), "p.yaml")
    names = [job.name for job in plan.jobs]
    assert names == [
        "precision[model=rnxt,batch_size=1]",
        "precision[model=rnxt,batch_size=8]",
        "precision[model=rnxt_fp16,batch_size=1]",
        "precision[model=rnxt_fp16,batch_size=8]",
        "alone",
    ]
    cells = [(job.sweeps[0].model, job.sweeps[0].batch_size, job.matrix) for job in plan.jobs[:4]]
    assert cells == [
        ("rnxt", 1, "precision"),
        ("rnxt", 8, "precision"),
        ("rnxt_fp16", 1, "precision"),
        ("rnxt_fp16", 8, "precision"),
    ]
    assert plan.jobs[0].sweeps[0].labels == {"plan": "p", "job": names[0], "matrix": "precision"}
    assert plan.jobs[4].matrix is None and plan.jobs[4].sweeps[0].labels == {"plan": "p", "job": "alone"}
    assert [job.name for job in plan.select(["precision"])] == names[:4]
    assert [job.name for job in plan.select([names[1]])] == [names[1]]
    with pytest.raises(ConfigError, match="its jobs are precision, alone"):
        plan.select(["nope"])


def test_a_matrix_refuses_what_it_cannot_expand_with_lines() -> None:
    text = """\
        jobs:
          a:
            model: m
            matrix:
              model: [x]
              batch_size: []
              junk: [1]
          b:
            matrix:
              concurrency: [x, 2]
              model: [m]
          c:
            model: m
            matrix: []
        """
    assert problems(text) == [
        "plans/p.yaml:5: job 'a': 'model' is given in the job and in its matrix: give one",
        "plans/p.yaml:6: job 'a': matrix 'batch_size' must be a list of values",
        "plans/p.yaml:7: unknown key 'junk' in matrix of job 'a' (see the sweep options in `loadgen sweep "
        "--help`: a plan takes their keys)",
        "plans/p.yaml:10: job 'b[concurrency=x,model=m]': concurrency: bad range 'x': expected A..B "
        "(doubling), A..B:S, A..B:xF, a,b,c or start:end:step",
        "plans/p.yaml:14: matrix of job 'c' must be a mapping of keys to values",
    ]


def test_a_matrix_jobs_own_problem_is_told_once() -> None:
    text = """\
        jobs:
          p:
            matrix:
              model: [a, b]
            concurrency: junk
        """
    assert problems(text) == [
        "plans/p.yaml:5: job 'p': concurrency: bad range 'junk': expected A..B (doubling), A..B:S, A..B:xF, "
        "a,b,c or start:end:step"
    ]
