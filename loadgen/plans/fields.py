"""The keys only a plan has: when a job runs (``cron``), what its run is compared with
(``baseline``) and what counts as a regression (``thresholds``)."""

from __future__ import annotations

import math

import yaml
from croniter import CroniterBadDateError, croniter

from loadgen.plans.model import Baseline
from loadgen.plans.reader import Reader, line_of

THRESHOLD_KEYS = {
    "max_throughput_drop": "max_throughput_drop_pct",
    "max_latency_rise": "max_latency_rise_pct",
    "percentile": "percentile",
    "confidence": "confidence",
}
"""Plan keys -> ``analysis.compare.Thresholds`` fields."""
_CRON_HELP = (
    "expected a cron expression: minute hour day-of-month month day-of-week, "
    "optionally with a leading seconds field (6 fields), or @hourly/@daily/@weekly"
)


def _percent(r: Reader, node: yaml.Node, what: str) -> float | None:
    text = r.text(node, what)
    if text is None:
        return None
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        r.add(node, f"{what} must be a percentage >= 0 such as 5% or 5, got {text!r}")
        return None
    return value


def thresholds(r: Reader, node: yaml.Node, where: str) -> dict[str, float]:
    items = r.mapping(node, f"thresholds of {where}")
    if items is None:
        return {}
    r.unknown_keys(items, tuple(THRESHOLD_KEYS), f"thresholds of {where}")
    values: dict[str, float] = {}
    for key, (_, value_node) in items.items():
        if key not in THRESHOLD_KEYS:
            continue
        if key == "percentile":
            text = r.text(value_node, f"{where}: percentile")
            try:
                percentile = float((text or "").strip().lower().removeprefix("p"))
            except ValueError:
                percentile = math.nan
            if text is not None and not 0.0 < percentile <= 100.0:
                r.add(value_node, f"{where}: percentile must be within (0, 100], such as 99 or p99.9")
            elif text is not None:
                values["percentile"] = percentile
        elif (pct := _percent(r, value_node, f"{where}: {key}")) is not None:
            if key == "confidence" and not 50.0 <= pct < 100.0:
                r.add(value_node, f"{where}: confidence must be within [50%, 100%), such as 95%")
                continue
            values[THRESHOLD_KEYS[key]] = pct / 100.0 if key == "confidence" else pct
    return values


def _label_selector(r: Reader, node: yaml.Node, where: str) -> tuple[tuple[str, str], ...] | None:
    nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
    pairs = []
    for item in nodes:
        text = r.text(item, f"{where}: baseline label")
        if text is None:
            return None
        for part in text.split(","):
            key, sep, value = part.strip().partition("=")
            if not sep or not key.strip():
                r.add(item, f"{where}: bad baseline label {part.strip()!r}: expected KEY=VALUE")
                return None
            pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def baseline(r: Reader, node: yaml.Node, where: str) -> Baseline | None:
    expected = "expected previous, a run id, or label: KEY=VALUE"
    line = line_of(node)
    if isinstance(node, yaml.MappingNode):
        items = r.mapping(node, f"baseline of {where}") or {}
        r.unknown_keys(items, ("label", "run"), f"baseline of {where}")
        known = [key for key in items if key in ("label", "run")]
        if len(known) != 1:
            r.add(node, f"{where}: baseline needs exactly one of 'label' and 'run'")
            return None
        key_node, value_node = items[known[0]]
        if known[0] == "run":
            run_id = r.integer(value_node, f"{where}: baseline run", 1)
            return None if run_id is None else Baseline("run", run_id=run_id, line=line)
        labels = _label_selector(r, value_node, where)
        return None if labels is None else Baseline("label", labels=labels, line=line)
    if not isinstance(node, yaml.ScalarNode):
        r.add(node, f"{where}: bad baseline: {expected}")
        return None
    value = r.value(node)
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            r.add(node, f"{where}: bad baseline run id {value}: run ids start at 1")
            return None
        return Baseline("run", run_id=value, line=line)
    text = str(node.value).strip()
    if text == "previous":
        return Baseline(line=line)
    if text.startswith("label:"):
        scalar = yaml.ScalarNode("tag:yaml.org,2002:str", text.removeprefix("label:"), node.start_mark)
        labels = _label_selector(r, scalar, where)
        return None if labels is None else Baseline("label", labels=labels, line=line)
    r.add(node, f"{where}: bad baseline {text!r}: {expected}")
    return None


def cron_fields(expression: str) -> tuple[str, bool]:
    """The expression and whether it has a leading seconds field (6 fields)."""
    text = " ".join(expression.split())
    return text, len(text.split()) == 6


def cron(r: Reader, node: yaml.Node, where: str, key: str = "cron") -> str | None:
    """``cron`` (or its older spelling ``schedule``): when ``loadgen schedule`` runs the job."""
    text = r.text(node, f"{where}: {key}")
    if text is None:
        return None
    expression, seconds = cron_fields(text)
    if len(expression.split()) not in (1, 5, 6) or not croniter.is_valid(
        expression, second_at_beginning=seconds
    ):
        r.add(node, f"{where}: bad {key} {text!r}: {_CRON_HELP}")
        return None
    try:  # valid, yet no date has it (30 2 *: February 30th): `loadgen schedule` would find no first time
        croniter(expression, second_at_beginning=seconds).get_next(float)
    except CroniterBadDateError:
        r.add(node, f"{where}: bad {key} {text!r}: no date matches it, it would never run")
        return None
    return expression
