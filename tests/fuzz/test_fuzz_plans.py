"""Plans, fuzzed: arbitrary YAML-ish text, near-valid plans (their keys, values of any shape), and cron
lines. ``parse_plan`` gives a plan or a PlanError whose every problem is one line; a cron expression a
plan accepts has a next time (``loadgen schedule`` must never meet one it cannot place)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from loadgen.cron import next_fire
from loadgen.plans import PlanError, parse_plan
from loadgen.plans.fields import THRESHOLD_KEYS
from loadgen.plans.parse import _PLAN_KEYS, job_keys
from tests.fuzz.promise import assert_one_line

KEYS = sorted({*job_keys(), *_PLAN_KEYS, *THRESHOLD_KEYS, "label", "run", "model"})
CRON_FIELDS = [
    "*",
    "*/5",
    "0",
    "59",
    "1-5",
    "L",
    "1W",
    "5#3",
    "?",
    "R",
    "MON",
    "jan",
    "1,2",
    "*/0",
    "31",
    "2",
    "30",
]
_cron = st.one_of(
    st.lists(st.sampled_from(CRON_FIELDS), min_size=1, max_size=7).map(" ".join),
    st.sampled_from(["@hourly", "@daily", "@weekly", "@reboot", "0 0 31 2 *", "0 0 0 30 2 *"]),
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=10),
    _cron,
    st.sampled_from(
        ["1..4", "p99=5ms", "previous", "label: a=b", "5%", "p99.9", "x=y", "1:16:1", "~", "2024-13-45"]
    ),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
plans = st.builds(
    lambda top, jobs: {**top, "jobs": jobs},
    st.dictionaries(st.sampled_from(KEYS), _values, max_size=3),
    _values
    | st.dictionaries(st.text(max_size=4), st.dictionaries(st.sampled_from(KEYS), _values, max_size=4)),
)


def _dump(plan: dict[str, Any]) -> str:
    return yaml.safe_dump(plan, default_flow_style=None, allow_unicode=True)


texts = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=":-[]{}&*!|>'\"%@` \n\t#,?abc123.\x85\u2028", max_size=80),
    plans.map(_dump),
    st.builds(
        lambda plan, at, junk: (
            lambda text: text[: at % (len(text) + 1)] + junk + text[at % (len(text) + 1) :]
        )(_dump(plan)),
        plans,
        st.integers(0, 500),
        st.text(alphabet=":-[]{}&*!|>'\" \n#\t", min_size=1, max_size=3),
    ),
)


@given(texts)
@example("\x9d")  # a character YAML refuses: its message was two lines
@example("jobs:\n  j: {model: m, baseline: " + "1" * 5000 + "}\n")  # was ValueError (int digits)
@example("jobs:\n  j: {model: m, baseline: 2024-13-45}\n")  # a timestamp YAML cannot build: was ValueError
@example("jobs:\n  j: {model: m, concurrency: '" + "1" * 5000 + "'}\n")  # was ValueError
@example("jobs:\n  j: {model: m, cron: '0 0 31 2 *'}\n")  # February 31st: accepted, then schedule crashed
def test_a_plan_is_read_or_refused_one_line_per_problem(text: str) -> None:
    try:
        plan = parse_plan(text, Path("/nonexistent/plan.yaml"))
    except PlanError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert_one_line(str(problem))
        return
    now = time.time()
    for job in plan.jobs:
        assert job.sweeps
        if job.cron is not None:
            assert next_fire(job.cron, now) > now


@given(_cron | st.text(alphabet="0123456789*/-,#LWHR? ", max_size=20) | st.text(max_size=12))
@example("1-5 1-5 1-5 1-5 1-5 5#3")  # valid to croniter, but no date has it: was CroniterBadDateError
def test_a_cron_line_a_plan_takes_has_a_next_time(expression: str) -> None:
    text = (
        "jobs:\n  j:\n    model: m\n    cron: "
        + yaml.safe_dump(expression, default_style='"', width=1000).strip()
        + "\n"
    )
    try:
        (job,) = parse_plan(text).jobs
    except PlanError as exc:
        for problem in exc.problems:
            assert_one_line(str(problem))
        return
    now = time.time()
    assert job.cron is not None and next_fire(job.cron, now) > now
