"""Plans: named jobs (models, load, thresholds, schedule, baseline) in one YAML file.

A plan is validated whole before anything runs, and every problem is reported with its
file and line (``plans/nightly.yaml:12: unknown key 'concurency' in job 'identity-c' (did
you mean 'concurrency'?)``): a nightly job should fail on the commit that broke the plan,
not at 2 a.m. halfway through. The YAML is read as a node tree (``yaml.compose``) to keep
those line numbers, and range-like scalars are read as written (YAML 1.1 would turn
``1:16:1`` into a base-60 integer and ``1.10`` into 1.1).

Each job's run is stored with the labels ``plan=<name>`` and ``job=<job>`` (beside the
plan's and the job's own labels) and compared with its baseline: ``previous`` (the latest
earlier completed run of the same plan, job and model), a run id, or a label selector.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from croniter import croniter

from loadgen.config import (
    DEFAULT_GRPC_URL,
    DEFAULT_HTTP_URL,
    GRPC_CLIENTS,
    MeasurementSettings,
    SweepSettings,
)
from loadgen.engine.schedules import read_intervals
from loadgen.errors import ConfigError
from loadgen.inputs import parse_shapes
from loadgen.ranges import parse_levels, parse_rates
from loadgen.results import RunInfo, RunStatus, ValidationTally

if TYPE_CHECKING:  # analysis imports pandas: loaded when a plan runs, not when it is read
    from analysis.compare import Comparison, Thresholds
    from loadgen.engine.step import StepListener
    from loadgen.storage import RunRecord, RunStore

BaselineKind = Literal["previous", "run", "label"]
Outcome = Literal["pass", "improvement", "regression", "failed", "error"]
RESERVED_LABELS = ("plan", "job")

_THRESHOLD_KEYS = {
    "max_throughput_drop": "max_throughput_drop_pct",
    "max_latency_rise": "max_latency_rise_pct",
    "percentile": "percentile",
}
_MEASUREMENT_KEYS = tuple(f.name for f in dataclasses.fields(MeasurementSettings))
# Keys a plan may set once for all its jobs; a job's own value wins (mappings merge by key).
_SHARED_KEYS = (
    "url",
    "protocol",
    "metrics_url",
    "schedule",
    "baseline",
    "thresholds",
    "measurement",
    "labels",
)
_PLAN_KEYS = ("name", "description", "jobs", *_SHARED_KEYS)
_JOB_KEYS = (
    "description",
    "model",
    "models",
    "model_version",
    "concurrency",
    "request_rate",
    "request_intervals",
    "distribution",
    "max_in_flight",
    "batch_size",
    "input_data",
    "shapes",
    "seed",
    "workers",
    "validate",
    "grpc_client",
    "request_timeout",
    *_SHARED_KEYS,
)
_CRON_HELP = (
    "expected a cron expression: minute hour day-of-month month day-of-week, "
    "optionally with a leading seconds field (6 fields), or @hourly/@daily/@weekly"
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a plan, at a line of its file."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class PlanError(ConfigError):
    """The plan is invalid; ``problems`` lists every problem found, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: p.line))
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Baseline:
    """What a job's new run is compared with."""

    kind: BaselineKind = "previous"
    run_id: int | None = None
    """``run``: this stored run."""
    labels: tuple[tuple[str, str], ...] = ()
    """``label``: the latest completed run of the same model carrying all these labels."""
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        if self.kind == "run":
            return f"run {self.run_id}"
        if self.kind == "label":
            return "label " + ",".join(f"{k}={v}" for k, v in self.labels)
        return "previous"


@dataclass(frozen=True)
class Job:
    """One job of a plan: a sweep per model, compared with a baseline against thresholds."""

    name: str
    line: int
    sweeps: tuple[SweepSettings, ...]
    """One per model, in the plan's order; labels include ``plan`` and ``job``."""
    thresholds: Thresholds
    baseline: Baseline
    schedule: str | None
    """Cron expression (5 fields, or 6 with leading seconds); None: run by ``plan run`` only."""


@dataclass(frozen=True)
class Plan:
    name: str
    path: Path
    jobs: tuple[Job, ...]

    def select(self, names: Sequence[str]) -> tuple[Job, ...]:
        """The named jobs in plan order (all for no names); ConfigError for an unknown name."""
        known = {job.name for job in self.jobs}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(
                f"plan {self.name!r} has no job {', '.join(map(repr, unknown))}: "
                f"its jobs are {', '.join(job.name for job in self.jobs)}"
            )
        return tuple(job for job in self.jobs if not names or job.name in names)


# -- reading ---------------------------------------------------------------------------------------


@dataclass
class _Reader:
    path: str
    base_dir: Path
    problems: list[Problem] = field(default_factory=list)
    _construct: yaml.constructor.SafeConstructor = field(default_factory=yaml.constructor.SafeConstructor)

    def add(self, node: yaml.Node | int, message: str) -> None:
        line = node if isinstance(node, int) else node.start_mark.line + 1
        self.problems.append(Problem(self.path, line, message))

    def value(self, node: yaml.Node) -> Any:
        try:
            return self._construct.construct_object(node, deep=True)
        except yaml.YAMLError:  # a tag the safe loader refuses (!!python/...): not a value we take
            return None

    def text(self, node: yaml.Node, what: str) -> str | None:
        """A scalar as written in the file (never YAML 1.1's ints from ``1:16``)."""
        if not isinstance(node, yaml.ScalarNode):
            self.add(node, f"{what} must be a single value, not {_shown(node)}")
        elif node.tag == "tag:yaml.org,2002:null" or node.value == "":
            self.add(node, f"{what} is empty")
        else:
            return str(node.value)
        return None

    def mapping(self, node: yaml.Node, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        """Key -> (key node, value node); problems for a non-mapping, odd or repeated keys."""
        if not isinstance(node, yaml.MappingNode):
            self.add(node, f"{what} must be a mapping of keys to values")
            return None
        items: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or not key_node.value:
                self.add(key_node, f"{what}: keys must be plain names")
                continue
            key = str(key_node.value)
            if key in items:
                self.add(key_node, f"{what}: {key!r} is given twice (first at line {_line(items[key][0])})")
                continue
            items[key] = (key_node, value_node)
        return items

    def unknown_keys(
        self,
        items: dict[str, tuple[yaml.Node, yaml.Node]],
        allowed: Sequence[str],
        where: str,
        elsewhere: tuple[Sequence[str], str] = ((), ""),
    ) -> None:
        """Report keys not in ``allowed``; ``elsewhere``: keys that belong in another place, and where."""
        for key, (key_node, _) in items.items():
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            if key in elsewhere[0]:
                hint = f" ({key} belongs in {elsewhere[1]})"
            elif close:
                hint = f" (did you mean {close[0]!r}?)"
            else:
                hint = f" (known keys: {', '.join(allowed)})"
            self.add(key_node, f"unknown key {key!r} in {where}{hint}")

    def integer(self, node: yaml.Node, what: str, minimum: int) -> int | None:
        value = self.value(node) if isinstance(node, yaml.ScalarNode) else None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.add(node, f"{what} must be a whole number >= {minimum}, got {_shown(node)}")
            return None
        return value

    def number(self, node: yaml.Node, what: str) -> float | None:
        value = self.value(node) if isinstance(node, yaml.ScalarNode) else None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.add(node, f"{what} must be a number, got {_shown(node)}")
            return None
        return float(value)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _shown(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return repr(node.value)
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


def _percent(r: _Reader, node: yaml.Node, what: str) -> float | None:
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


def _thresholds(r: _Reader, node: yaml.Node, where: str) -> dict[str, float]:
    items = r.mapping(node, f"thresholds of {where}")
    if items is None:
        return {}
    r.unknown_keys(items, tuple(_THRESHOLD_KEYS), f"thresholds of {where}")
    values: dict[str, float] = {}
    for key, (_, value_node) in items.items():
        if key not in _THRESHOLD_KEYS:
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
            values[_THRESHOLD_KEYS[key]] = pct
    return values


def _measurement(r: _Reader, node: yaml.Node, where: str) -> dict[str, float]:
    items = r.mapping(node, f"measurement of {where}")
    if items is None:
        return {}
    r.unknown_keys(items, _MEASUREMENT_KEYS, f"measurement of {where}")
    values: dict[str, float] = {}
    for key, (_, value_node) in items.items():
        if key not in _MEASUREMENT_KEYS:
            continue
        number = r.number(value_node, f"{where}: measurement {key}")
        if number is None:
            continue
        value: float = number if key == "stability_percentage" else int(number)
        try:  # one key at a time, so the message points at its line
            MeasurementSettings(**{key: value})  # type: ignore[arg-type]
        except ConfigError as exc:
            reason = str(exc).split(" ", 1)[1] if str(exc).startswith("--") else str(exc)
            r.add(value_node, f"{where}: measurement {key} {reason}")
            continue
        values[key] = value
    return values


def _labels(r: _Reader, node: yaml.Node, where: str) -> dict[str, str]:
    items = r.mapping(node, f"labels of {where}")
    if items is None:
        return {}
    labels = {}
    for key, (key_node, value_node) in items.items():
        if key in RESERVED_LABELS:
            r.add(key_node, f"{where}: label {key!r} is set by the plan itself (plan=<plan>, job=<job>)")
        elif (text := r.text(value_node, f"{where}: label {key!r}")) is not None:
            labels[key] = text
    return labels


def _label_selector(r: _Reader, node: yaml.Node, where: str) -> tuple[tuple[str, str], ...] | None:
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


def _baseline(r: _Reader, node: yaml.Node, where: str) -> Baseline | None:
    expected = "expected previous, a run id, or label: KEY=VALUE"
    line = _line(node)
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


def _schedule(r: _Reader, node: yaml.Node, where: str) -> str | None:
    text = r.text(node, f"{where}: schedule")
    if text is None:
        return None
    expression, seconds = cron_fields(text)
    if len(expression.split()) not in (1, 5, 6) or not croniter.is_valid(
        expression, second_at_beginning=seconds
    ):
        r.add(node, f"{where}: bad schedule {text!r}: {_CRON_HELP}")
        return None
    return expression


def _shared(r: _Reader, items: dict[str, tuple[yaml.Node, yaml.Node]], where: str) -> dict[str, Any]:
    """Typed values of the keys a plan and its jobs share (only those given and valid)."""
    values: dict[str, Any] = {}
    if "url" in items and (text := r.text(items["url"][1], f"{where}: url")) is not None:
        values["url"] = text
    if "metrics_url" in items:  # "off" (or "") turns scraping off, as --no-metrics does
        node = items["metrics_url"][1]
        off = isinstance(node, yaml.ScalarNode) and str(node.value).lower() in ("", "off", "false", "no")
        if off or (text := r.text(node, f"{where}: metrics_url")) is not None:
            values["metrics_url"] = "" if off else text
    if "protocol" in items and (text := r.text(items["protocol"][1], f"{where}: protocol")) is not None:
        if text in ("grpc", "http"):
            values["protocol"] = text
        else:
            r.add(items["protocol"][1], f"{where}: protocol must be grpc or http, got {text!r}")
    if "schedule" in items and (schedule := _schedule(r, items["schedule"][1], where)) is not None:
        values["schedule"] = schedule
    if "baseline" in items and (baseline := _baseline(r, items["baseline"][1], where)) is not None:
        values["baseline"] = baseline
    if "thresholds" in items:
        values["thresholds"] = _thresholds(r, items["thresholds"][1], where)
    if "measurement" in items:
        values["measurement"] = _measurement(r, items["measurement"][1], where)
    if "labels" in items:
        values["labels"] = _labels(r, items["labels"][1], where)
    return values


def _merged(defaults: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    merged = {**defaults, **own}
    for key in ("thresholds", "measurement", "labels"):
        merged[key] = {**defaults.get(key, {}), **own.get(key, {})}
    return merged


def _models(r: _Reader, items: dict[str, tuple[yaml.Node, yaml.Node]], where: str, line: int) -> list[str]:
    if ("model" in items) == ("models" in items):
        r.add(line if "model" not in items else items["models"][0], f"{where}: give either model or models")
        return []
    if "model" in items:
        model = r.text(items["model"][1], f"{where}: model")
        return [] if model is None else [model]
    node = items["models"][1]
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        r.add(node, f"{where}: models must be a list of model names")
        return []
    models = [r.text(item, f"{where}: model") for item in node.value]
    if len(set(models)) != len(models):
        r.add(node, f"{where}: a model is listed twice")
    return [m for m in models if m is not None]


def _file(r: _Reader, node: yaml.Node, what: str) -> str | None:
    text = r.text(node, what)
    if text is None:
        return None
    path = Path(text).expanduser()
    path = path if path.is_absolute() else r.base_dir / path
    if not path.is_file():
        r.add(node, f"{what}: file {text!r} not found (looked for {path})")
        return None
    return str(path)


def _load(r: _Reader, items: dict[str, tuple[yaml.Node, yaml.Node]], where: str) -> dict[str, Any] | None:
    """Scenario, levels and replayed intervals of a job (concurrency 1 when none is given)."""
    given = [key for key in ("concurrency", "request_rate", "request_intervals") if key in items]
    if len(given) > 1:
        r.add(
            items[given[1]][0], f"{where}: give only one of concurrency, request_rate and request_intervals"
        )
        return None
    if "distribution" in items and given != ["request_rate"]:
        r.add(items["distribution"][0], f"{where}: distribution applies to request_rate only")
    key = given[0] if given else "concurrency"
    if key == "request_intervals":
        path = _file(r, items[key][1], f"{where}: request_intervals")
        if path is None:
            return None
        try:
            intervals = read_intervals(path)
        except ConfigError as exc:
            r.add(items[key][1], f"{where}: {exc}")
            return None
        rate = 1e6 / (sum(intervals) / len(intervals))
        return {"scenario": "request_rate", "levels": (rate,), "request_intervals_us": intervals}
    text = r.text(items[key][1], f"{where}: {key}") if given else "1"
    if text is None:
        return None
    try:
        levels = parse_levels(text) if key == "concurrency" else parse_rates(text)
    except ConfigError as exc:
        r.add(items[key][1], f"{where}: {key}: {exc}")
        return None
    load: dict[str, Any] = {"scenario": key, "levels": levels}
    if "distribution" in items and (text := r.text(items["distribution"][1], f"{where}: distribution")):
        if text not in ("constant", "poisson"):
            r.add(
                items["distribution"][1], f"{where}: distribution must be constant or poisson, got {text!r}"
            )
        load["distribution"] = text
    return load


def _shapes(r: _Reader, node: yaml.Node, where: str) -> dict[str, tuple[int, ...]]:
    items = r.mapping(node, f"shapes of {where}") or {}
    specs = []
    for name, (_, value_node) in items.items():
        if isinstance(value_node, yaml.SequenceNode):
            dims = ",".join(str(item.value) for item in value_node.value if isinstance(item, yaml.ScalarNode))
        else:
            dims = r.text(value_node, f"{where}: shape of {name}") or ""
        specs.append((value_node, f"{name}:{dims}"))
    shapes: dict[str, tuple[int, ...]] = {}
    for value_node, spec in specs:
        try:
            shapes.update(parse_shapes([spec]))
        except ConfigError as exc:
            r.add(value_node, f"{where}: {str(exc).replace('--shape', 'shape')}")
    return shapes


def _job(
    r: _Reader, plan: str, name: str, name_node: yaml.Node, node: yaml.Node, defaults: dict[str, Any]
) -> Job | None:
    from analysis.compare import Thresholds

    where = f"job {name!r}"
    items = r.mapping(node, where)
    if items is None:
        return None
    before = len(r.problems)
    r.unknown_keys(items, _JOB_KEYS, where)
    models = _models(r, items, where, _line(name_node))
    load = _load(r, items, where)
    settings = _merged(defaults, _shared(r, items, where))
    kwargs: dict[str, Any] = {}
    for key, minimum in (("batch_size", 1), ("max_in_flight", 1), ("seed", 0), ("workers", 1)):
        if key in items and (number := r.integer(items[key][1], f"{where}: {key}", minimum)) is not None:
            kwargs[key] = number
    if "model_version" in items and (text := r.text(items["model_version"][1], f"{where}: model_version")):
        kwargs["model_version"] = text
    if "input_data" in items and (text := r.text(items["input_data"][1], f"{where}: input_data")):
        kwargs["input_data"] = text
        if text not in ("random", "zero"):
            path = _file(r, items["input_data"][1], f"{where}: input_data")
            kwargs["input_data"] = path or text
    if "shapes" in items:
        kwargs["shapes"] = _shapes(r, items["shapes"][1], where)
    if "grpc_client" in items and (text := r.text(items["grpc_client"][1], f"{where}: grpc_client")):
        if text in GRPC_CLIENTS:
            kwargs["grpc_client"] = text
        else:
            choices = " or ".join(GRPC_CLIENTS)
            r.add(items["grpc_client"][1], f"{where}: grpc_client must be {choices}, got {text!r}")
    if "request_timeout" in items:
        node = items["request_timeout"][1]
        seconds = r.number(node, f"{where}: request_timeout (seconds)")
        if seconds is not None and seconds < 0:
            r.add(node, f"{where}: request_timeout must be >= 0 seconds (0: no deadline), got {seconds:g}")
        elif seconds is not None:
            kwargs["request_timeout_s"] = float(seconds)
    if "validate" in items:
        flag = r.value(items["validate"][1])
        if isinstance(flag, bool):
            kwargs["validate"] = flag
        else:
            r.add(
                items["validate"][1],
                f"{where}: validate must be true or false, got {_shown(items['validate'][1])}",
            )
    if len(r.problems) > before or load is None:
        return None
    labels = {**settings["labels"], "plan": plan, "job": name}
    line = _line(name_node)
    protocol = settings.get("protocol", "grpc")
    try:
        measurement = MeasurementSettings(**settings["measurement"])
        sweeps = tuple(
            SweepSettings(
                model=model,
                url=settings.get("url", DEFAULT_HTTP_URL if protocol == "http" else DEFAULT_GRPC_URL),
                protocol=protocol,
                metrics_url=settings.get("metrics_url"),
                measurement=measurement,
                labels=labels,
                **load,
                **kwargs,
            )
            for model in models
        )
        thresholds = Thresholds(**settings["thresholds"])
    except (ConfigError, ValueError) as exc:
        r.add(line, f"{where}: {exc}")
        return None
    return Job(
        name=name,
        line=line,
        sweeps=sweeps,
        thresholds=thresholds,
        baseline=settings.get("baseline", Baseline(line=line)),
        schedule=settings.get("schedule"),
    )


def parse_plan(text: str, path: Path | str = "<plan>") -> Plan:
    """Validate a plan's YAML text; :class:`PlanError` lists every problem with its line.

    Relative file names in the plan (input data, request intervals) are relative to its folder.
    """
    path = Path(path)
    r = _Reader(str(path), path.parent.absolute())
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        hint = ""
        if "alias" in str(exc.problem) or "alias" in str(exc.context):
            hint = " (quote cron expressions that start with '*': schedule: \"*/5 * * * *\")"
        r.add((mark.line + 1) if mark else 1, f"not valid YAML: {exc.problem or exc.context}{hint}")
        raise PlanError(r.problems) from None
    except yaml.YAMLError as exc:
        raise PlanError([Problem(str(path), 1, f"not valid YAML: {exc}")]) from None
    if root is None:
        raise PlanError([Problem(str(path), 1, "the plan is empty: it needs at least 'jobs'")])
    items = r.mapping(root, "the plan")
    if items is None:
        raise PlanError(r.problems)
    r.unknown_keys(items, _PLAN_KEYS, "the plan", (_JOB_KEYS, "each job"))
    name = path.stem
    if "name" in items:
        name = r.text(items["name"][1], "the plan's name") or name
    defaults = _merged({}, _shared(r, items, "the plan"))
    jobs = []
    if "jobs" not in items:
        r.add(root, "the plan has no 'jobs'")
    elif (job_items := r.mapping(items["jobs"][1], "jobs")) is not None:
        if not job_items:
            r.add(items["jobs"][1], "jobs is empty")
        for job_name, (name_node, job_node) in job_items.items():
            job = _job(r, name, job_name, name_node, job_node, defaults)
            if job is not None:
                jobs.append(job)
    if r.problems:
        raise PlanError(r.problems)
    return Plan(name=name, path=path, jobs=tuple(jobs))


def load_plan(path: Path | str) -> Plan:
    """Read and validate the plan file at ``path`` (:class:`PlanError` when invalid)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read plan {path}: {reason}") from None
    return parse_plan(text, path)


# -- baselines -------------------------------------------------------------------------------------


def _usable(run: RunRecord) -> bool:
    return run.status is RunStatus.COMPLETED and run.step_count > 0


def resolve_baseline(
    baseline: Baseline, runs: Sequence[RunRecord], *, plan: str, job: str, model: str, new_run_id: int
) -> int | None:
    """The run id to compare run ``new_run_id`` with, or None when there is none yet.

    ``runs`` are candidates, newest first (``RunStore.list_runs``). ``previous`` and label
    selectors only pick completed runs with steps of the same model, never the new run itself.
    """
    if baseline.kind == "run":
        return baseline.run_id
    for run in runs:
        if run.id == new_run_id or run.model != model or not _usable(run):
            continue
        if baseline.kind == "previous":
            if run.id < new_run_id and run.labels.get("plan") == plan and run.labels.get("job") == job:
                return run.id
        elif all(run.labels.get(key) == value for key, value in baseline.labels):
            return run.id
    return None


def check_baseline_runs(plan: Plan, jobs: Sequence[Job], store: RunStore) -> list[Problem]:
    """Explicit baseline run ids that are not in ``store``: checked before any job runs."""
    from loadgen.errors import RunNotFound

    problems = []
    for job in jobs:
        if job.baseline.kind == "run" and job.baseline.run_id is not None:
            try:
                store.get_run(job.baseline.run_id)
            except RunNotFound as exc:
                problems.append(
                    Problem(str(plan.path), job.baseline.line, f"job {job.name!r}: baseline {exc}")
                )
    return problems


# -- running ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobResult:
    """One model's run of a job and its verdict against the baseline."""

    plan: str
    job: str
    model: str
    outcome: Outcome
    """``pass`` (also without a baseline yet), ``improvement``, ``regression``, ``failed`` (the run
    failed midway) or ``error`` (it could not start: server unreachable, unknown model; or the
    runs cannot be compared)."""
    run_id: int | None = None
    baseline_id: int | None = None
    note: str = ""
    comparison: Comparison | None = None

    def to_dict(self) -> dict[str, Any]:
        """The verdict JSON (webhooks, hooks, ``--json``)."""
        return {
            "plan": self.plan,
            "job": self.job,
            "model": self.model,
            "verdict": self.outcome,
            "run_id": self.run_id,
            "baseline_run_id": self.baseline_id,
            "note": self.note,
            "comparison": None if self.comparison is None else self.comparison.to_dict(),
        }


async def run_job(
    plan: Plan,
    job: Job,
    sweep: SweepSettings,
    store: RunStore,
    *,
    listener: StepListener | None = None,
    on_run_created: Callable[[int, RunInfo], None] | None = None,
) -> JobResult:
    """Run one model of a job, store it, and compare it with its baseline.

    A server that cannot be reached or lacks the model, input data that does not fit, and
    runs that cannot be compared become an ``error`` result rather than an exception, so
    the other jobs still run. Cancellation propagates (the run is marked interrupted).
    """
    from analysis.compare import CompareError, Verdict, load_comparison
    from loadgen.errors import ServerUnavailable, UnknownModel
    from loadgen.runner import execute_sweep

    result = JobResult(plan.name, job.name, sweep.model, "error")
    try:
        outcome = await execute_sweep(sweep, store, listener=listener, on_run_created=on_run_created)
    except (ServerUnavailable, UnknownModel, ConfigError) as exc:
        return dataclasses.replace(result, note=str(exc))
    result = dataclasses.replace(result, run_id=outcome.run_id)
    if outcome.status is not RunStatus.COMPLETED:
        return dataclasses.replace(result, outcome="failed", note=outcome.error or str(outcome.status))
    checked = ValidationTally.merged(s.validation for s in outcome.steps)
    if checked is not None and checked.mismatched:  # wrong answers fail the job whatever its speed
        note = f"validate: {checked.mismatched} of {checked.checked} answers differ from the reference"
        return dataclasses.replace(result, outcome="failed", note=note)
    base_id = resolve_baseline(
        job.baseline,
        store.list_runs(model=sweep.model),
        plan=plan.name,
        job=job.name,
        model=sweep.model,
        new_run_id=outcome.run_id,
    )
    if base_id is None:
        note = (
            "no baseline yet (first run)"
            if job.baseline.kind == "previous"
            else f"no run with {job.baseline}"
        )
        return dataclasses.replace(result, outcome="pass", note=note)
    try:
        comparison = load_comparison(store, base_id, outcome.run_id, job.thresholds)
    except CompareError as exc:
        return dataclasses.replace(result, baseline_id=base_id, note=str(exc))
    regressed = [
        f"{comparison.level_name} {s.level:g}: {'; '.join(s.reasons)}" for s in comparison.steps if s.reasons
    ]
    verdict: Outcome = "pass"
    if comparison.verdict is Verdict.REGRESSION:
        verdict = "regression"
    elif comparison.verdict is Verdict.IMPROVEMENT:
        verdict = "improvement"
    return dataclasses.replace(
        result,
        outcome=verdict,
        baseline_id=base_id,
        note=" | ".join(regressed),
        comparison=comparison,
    )
