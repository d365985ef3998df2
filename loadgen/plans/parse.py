"""A plan's YAML -> a validated :class:`Plan`, every problem with its line.

A plan takes every sweep option by its key (or its flag's name: ``request_timeout``),
at the plan's top level (shared by its jobs) or in a job (which wins); mappings such
as ``labels`` merge by key. The values go to the one settings constructor
(:func:`loadgen.config.build_settings`) and each problem it finds is put back on the
line of the key at fault. A job's ``models`` run at the same time, each its own run,
as ``loadgen sweep -m a -m b`` does; an entry may be a mapping with the model's own
option values. Relative file names are relative to the plan's folder; header values
may name environment variables (``${TOKEN}``), read when the plan is read and never
stored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import yaml

from loadgen.config import BY_KEY, BY_NAME, SweepSettings, build_settings, option_key, parse_layer
from loadgen.config.options import MEASUREMENT_KEYS
from loadgen.config.settings import INPUT_KEYWORDS
from loadgen.errors import ConfigError, SettingsError
from loadgen.plans import fields
from loadgen.plans.model import RESERVED_LABELS, Baseline, Job, Plan
from loadgen.plans.reader import Items, PlanError, Problem, Reader, line_of, raw

PLAN_ONLY = {
    "name": "the plan's name (default: the file's name)",
    "description": "free text, for the reader",
    "jobs": "the jobs, by name",
    "models": "several models measured at the same time (a job's -m repeated)",
    "cron": "when `loadgen schedule` runs a job (a cron expression)",
    "schedule": "the older spelling of cron",
    "baseline": "what a job's run is compared with",
    "thresholds": "what counts as a regression",
    "measurement": "groups the measurement options, as plans have written them",
    "matrix": "lists of values (model or any sweep option): the job once per combination",
}
"""Keys a plan has beyond the sweep options, and what each is for."""
_PLAN_KEYS = ("name", "description", "jobs", "cron", "schedule", "baseline", "thresholds", "measurement")
_JOB_KEYS = (
    "description", "model", "models", "cron", "schedule", "baseline", "thresholds", "measurement", "matrix",
)  # fmt: skip
_ENV = re.compile(r"\$\{(\w+)\}")


@dataclass
class _Layer:
    """One level's option values (plan, job or model entry) with the nodes they came from."""

    where: str
    values: dict[str, Any] = field(default_factory=dict)
    """Name as written -> value as written (what the constructor takes)."""
    nodes: dict[str, yaml.Node] = field(default_factory=dict)
    """Option key -> the node of its value (for lines)."""
    names: dict[str, str] = field(default_factory=dict)
    """Option key -> the name as written (for messages)."""

    def add(self, name: str, key: str, node: yaml.Node, value: Any) -> None:
        self.values[name], self.nodes[key], self.names[key] = value, node, name

    def spell(self, key: str) -> str:
        """An option as this layer wrote it."""
        return self.names.get(key, key)


_Shared: TypeAlias = tuple[_Layer, dict[str, Any], dict[str, Any]]
"""What every job of a plan starts from: the plan's layer, its values that parsed, its plan-only keys."""


def _option_names() -> tuple[str, ...]:
    return tuple(name for option in BY_KEY.values() for name in option.names if option.key != "model")


def job_keys() -> frozenset[str]:
    """Every key a job takes: its own (``PLAN_ONLY``) and each sweep option's names."""
    return frozenset((*_JOB_KEYS, *_option_names()))


def _value(r: Reader, key: str, node: yaml.Node, where: str) -> Any:
    """The value as the constructor takes it: relative files anchored, headers from the environment."""
    value = raw(node)
    if BY_KEY[key].path and isinstance(value, str) and value and value not in INPUT_KEYWORDS:
        path = Path(value).expanduser()
        value = str(path if path.is_absolute() else r.base_dir / path)
    if key == "headers":
        value = _from_environment(r, node, value, where)
    if key == "labels" and isinstance(node, yaml.MappingNode):
        for label_node, _ in node.value:
            if str(label_node.value) in RESERVED_LABELS:
                r.add(
                    label_node,
                    f"{where}: label {label_node.value!r} is set by the plan itself (plan=<plan>, job=<job>)",
                )
                value.pop(str(label_node.value), None)
    return value


def _from_environment(r: Reader, node: yaml.Node, value: Any, where: str) -> Any:
    def expand(text: str) -> str:
        def variable(match: re.Match[str]) -> str:
            if match[1] not in os.environ:
                r.add(node, f"{where}: header value needs environment variable {match[1]}, which is not set")
                return ""
            return os.environ[match[1]]

        return _ENV.sub(variable, text)

    if isinstance(value, dict):
        return {name: expand(str(v)) for name, v in value.items()}
    if isinstance(value, list):
        return [expand(str(v)) for v in value]
    return expand(str(value))


def _layer(r: Reader, items: Items, where: str) -> _Layer:
    """The sweep options among ``items`` (and in their ``measurement`` group)."""
    layer = _Layer(where)
    for name, (_, value_node) in items.items():
        option = BY_NAME.get(name)  # as written: a plan spells keys with underscores
        key = None if option is None else option.key
        if key is not None and key != "model":
            if key in layer.nodes:
                r.add(value_node, f"{where}: {name!r} and {layer.names[key]!r} are the same option: give one")
                continue
            layer.add(name, key, value_node, _value(r, key, value_node, where))
    group = r.mapping(items["measurement"][1], f"measurement of {where}") if "measurement" in items else None
    for name, (key_node, value_node) in (group or {}).items():
        key = BY_NAME[name].key if name in BY_NAME else None
        if key not in MEASUREMENT_KEYS:
            r.unknown_keys({name: (key_node, value_node)}, MEASUREMENT_KEYS, f"measurement of {where}")
        elif key in layer.nodes:
            r.add(key_node, f"{where}: {name} is given twice (in measurement and beside it)")
        else:
            layer.add(name, key, value_node, _value(r, key, value_node, where))
    return layer


def _models(r: Reader, items: Items, where: str, line: int) -> list[tuple[str, _Layer]]:
    """``model: NAME`` or ``models: [NAME, {model: NAME, key: value, ...}, ...]``."""
    if ("model" in items) == ("models" in items):
        r.add(line if "model" not in items else items["models"][0], f"{where}: give either model or models")
        return []
    if "model" in items:
        model = r.text(items["model"][1], f"{where}: model")
        return [] if model is None else [(model, _Layer(where))]
    node = items["models"][1]
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        r.add(node, f"{where}: models must be a list of model names (or of mappings with a model key)")
        return []
    models: list[tuple[str, _Layer]] = []
    for entry in node.value:
        if isinstance(entry, yaml.MappingNode):
            own = r.mapping(entry, f"{where}: a model entry") or {}
            r.unknown_keys(own, ("model", *_option_names()), f"a model entry of {where}")
            name = r.text(own["model"][1], f"{where}: model") if "model" in own else None
            if "model" not in own:
                r.add(entry, f"{where}: a model entry needs 'model: NAME'")
            if name is not None:
                models.append((name, _layer(r, own, f"{where}, model {name!r}")))
        elif (name := r.text(entry, f"{where}: model")) is not None:
            models.append((name, _Layer(where)))
    names = [name for name, _ in models]
    if len(set(names)) != len(names):
        r.add(node, f"{where}: a model is listed twice")
    return models


def _settings(
    r: Reader,
    layers: list[_Layer],
    shared: Mapping[str, Any],
    model: str | None,
    line: int,
    fixed: dict[str, Any],
) -> SweepSettings | None:
    """One model's settings; a problem goes on the line of the deepest layer that gave its key.

    ``model`` None: the job names no usable model, but its values are still checked."""
    try:
        return build_settings(shared, *(la.values for la in layers[1:]), {"model": model or "-", **fixed})
    except SettingsError as exc:
        for problem in exc.problems:
            layer = next((la for la in reversed(layers) if problem.key in la.nodes), None)
            if layer is None:
                r.add(line, f"{layers[-1].where}: {problem.render()}")
            else:
                r.add(layer.nodes[problem.key], f"{layer.where}: {problem.render(layer.spell)}")
    return None


def _plan_only(r: Reader, items: Items, where: str) -> dict[str, Any]:
    """The plan-only keys a plan and its jobs share (only those given and valid)."""
    values: dict[str, Any] = {}
    given = [key for key in ("cron", "schedule") if key in items]
    if len(given) == 2:
        r.add(items["schedule"][0], f"{where}: give cron or schedule (its older spelling), not both")
    elif given and (cron := fields.cron(r, items[given[0]][1], where, given[0])) is not None:
        values["cron"] = cron
    if "baseline" in items and (baseline := fields.baseline(r, items["baseline"][1], where)) is not None:
        values["baseline"] = baseline
    if "thresholds" in items:
        values["thresholds"] = fields.thresholds(r, items["thresholds"][1], where)
    return values


Cell = tuple[tuple[str, yaml.Node], ...]
"""One combination of a job's matrix: (name as written, value node), in the matrix's order."""


def _matrix(r: Reader, items: Items, where: str) -> list[Cell]:
    """``matrix: {model: [a, b], batch_size: [1, 8]}``: every combination, the first key outermost;
    [()] for a job without one."""
    if "matrix" not in items:
        return [()]
    axes = r.mapping(items["matrix"][1], f"matrix of {where}")
    if axes is None:
        return []
    if not axes:
        r.add(items["matrix"][1], f"{where}: matrix needs at least one key with a list of values")
        return []
    known = ("model", *_option_names())
    r.unknown_keys(axes, known, f"matrix of {where}")
    cells: list[Cell] = [()]
    for name, (key_node, values) in axes.items():
        if name not in known:
            continue  # told by unknown_keys
        if (option_key(name) or name) in {option_key(k) or k for k in items}:
            r.add(key_node, f"{where}: {name!r} is given in the job and in its matrix: give one")
        elif name == "model" and "models" in items:
            r.add(key_node, f"{where}: a matrix of models goes without 'models'")
        if not isinstance(values, yaml.SequenceNode) or not values.value:
            r.add(values, f"{where}: matrix {name!r} must be a list of values")
            return []
        cells = [(*cell, (name, value)) for cell in cells for value in values.value]
    return cells


def _cell_name(cell: Cell) -> str:
    return ",".join(f"{name}={raw(node)}" for name, node in cell)


def _job(
    r: Reader,
    plan: str,
    name: str,
    name_node: yaml.Node,
    node: yaml.Node,
    shared: _Shared,
) -> list[Job]:
    """The job, or one per combination of its matrix (named ``job[key=value,...]``). What the job
    itself gives is read once, so its problems are told once; each combination's values are a
    layer of their own, so a bad one is told with the combination's name."""
    from analysis.compare import Thresholds

    where = f"job {name!r}"
    items = r.mapping(node, where)
    if items is None:
        return []
    r.unknown_keys(items, (*_JOB_KEYS, *_option_names()), where)
    cells = _matrix(r, items, where)
    line = line_of(name_node)
    plan_layer, good_plan, plan_values = shared
    own = _plan_only(r, items, where)
    job_layer = _layer(r, items, where)
    thresholds = Thresholds(**{**plan_values.get("thresholds", {}), **own.get("thresholds", {})})
    baseline = own.get("baseline") or plan_values.get("baseline") or Baseline(line=line)
    cron = own.get("cron", plan_values.get("cron"))
    jobs = []
    for cell in cells:
        expanded = f"{name}[{_cell_name(cell)}]" if cell else name
        cell_items = {key: (name_node, value) for key, value in cell}
        layers = [plan_layer, job_layer, _layer(r, cell_items, f"job {expanded!r}")]
        models = _models(r, {**items, **cell_items}, where, line)
        fixed = {"labels": {"plan": plan, "job": expanded, **({"matrix": name} if cell else {})}}
        sweeps = [_settings(r, [*layers, model], good_plan, m, line, fixed) for m, model in models]
        if not models:
            _settings(r, layers, good_plan, None, line, fixed)
        kept = tuple(s for s in sweeps if s is not None)
        if models and len(kept) == len(sweeps):
            jobs.append(Job(expanded, line, kept, thresholds, baseline, cron))
    return jobs


def parse_plan(text: str, path: Path | str = "<plan>") -> Plan:
    """Validate a plan's YAML text; :class:`PlanError` lists every problem with its line."""
    path = Path(path)
    r = Reader(str(path), path.parent.absolute())
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        hint = ""
        if "alias" in str(exc.problem) or "alias" in str(exc.context):
            hint = " (quote cron expressions that start with '*': cron: \"*/5 * * * *\")"
        r.add((mark.line + 1) if mark else 1, f"not valid YAML: {exc.problem or exc.context}{hint}")
        raise PlanError(r.problems) from None
    except yaml.YAMLError as exc:  # a character YAML refuses: its message spans lines
        raise PlanError([Problem(str(path), 1, f"not valid YAML: {' '.join(str(exc).split())}")]) from None
    if root is None:
        raise PlanError([Problem(str(path), 1, "the plan is empty: it needs at least 'jobs'")])
    items = r.mapping(root, "the plan")
    if items is None:
        raise PlanError(r.problems)
    r.unknown_keys(items, (*_PLAN_KEYS, *_option_names()), "the plan", (("model", "models"), "each job"))
    name = path.stem
    if "name" in items:
        name = r.text(items["name"][1], "the plan's name") or name
    plan_layer = _layer(r, items, "the plan")
    plan_typed, plan_problems = parse_layer(plan_layer.values)
    for problem in plan_problems:  # each once here, not once per job
        r.add(plan_layer.nodes.get(problem.key, root), f"the plan: {problem.render(plan_layer.spell)}")
    good_plan = {name: v for name, v in plan_layer.values.items() if option_key(name) in plan_typed}
    shared = (plan_layer, good_plan, _plan_only(r, items, "the plan"))
    jobs = []
    if "jobs" not in items:
        r.add(root, "the plan has no 'jobs'")
    elif (job_items := r.mapping(items["jobs"][1], "jobs")) is not None:
        if not job_items:
            r.add(items["jobs"][1], "jobs is empty")
        for job_name, (name_node, job_node) in job_items.items():
            jobs.extend(_job(r, name, job_name, name_node, job_node, shared))
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
