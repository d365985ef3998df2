"""A tune read back from its runs: each configuration's best step under the SLO, the
throughput/latency Pareto front over every step, the best configuration and its config.pbtxt.

A tune is no more than its runs (labels ``tune`` and ``tune_config``), so what is stored is the
whole truth: a resumed tune and a report read the same rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loadgen.config import LatencyLimit
from loadgen.errors import ConfigError
from loadgen.histogram import LatencyHistogram
from loadgen.results import RunStatus
from loadgen.storage import RunStore
from loadgen.storage.records import RunRecord, StepRecord

TUNE_LABEL = "tune"
CONFIG_LABEL = "tune_config"
DEFAULT_PERCENTILE = 99.0
"""The front's latency without an SLO."""


@dataclass(frozen=True)
class StepPoint:
    config: str
    run_id: int
    level: float
    throughput: float
    latency_ms: float
    """At the SLO's percentile (p99 without one)."""
    meets: bool


@dataclass(frozen=True)
class ConfigResult:
    config: str
    run_id: int
    status: str
    points: tuple[StepPoint, ...]
    model_config: Mapping[str, Any]
    """The config Triton served for this run, as stored with it."""

    @property
    def best(self) -> StepPoint | None:
        """The highest throughput among the steps that met the SLO (lower latency breaks a tie)."""
        met = [p for p in self.points if p.meets]
        return max(met, key=rank) if met else None


@dataclass(frozen=True)
class TuneResult:
    tune_id: str
    model: str
    slo: LatencyLimit | None
    configs: tuple[ConfigResult, ...]

    @property
    def percentile(self) -> float:
        return self.slo.percentile if self.slo else DEFAULT_PERCENTILE

    @property
    def winner(self) -> tuple[ConfigResult, StepPoint] | None:
        """The configuration with the best step under the SLO, and that step; None: none met it."""
        scored = [(c, c.best) for c in self.configs if c.best is not None]
        return max(scored, key=lambda pair: rank(pair[1])) if scored else None

    @property
    def pareto(self) -> list[StepPoint]:
        """Steps no other step beats on both throughput and latency, by latency."""
        points = sorted(
            (p for c in self.configs for p in c.points), key=lambda p: (p.latency_ms, -p.throughput)
        )
        front: list[StepPoint] = []
        for point in points:
            if not front or point.throughput > front[-1].throughput:
                front.append(point)
        return front


def rank(point: StepPoint | None) -> tuple[float, float]:
    """Higher is better: throughput first, then lower latency; nothing ranks below everything."""
    return (point.throughput, -point.latency_ms) if point else (-math.inf, -math.inf)


def tune_runs(store: RunStore, tune_id: str) -> list[RunRecord]:
    """The tune's runs, oldest first; a configuration tried again (a resumed tune) keeps its newest."""
    runs = sorted((r for r in store.list_runs() if r.labels.get(TUNE_LABEL) == tune_id), key=lambda r: r.id)
    if not runs:
        raise ConfigError(f"no runs of tune {tune_id!r} in {store.url} (`loadgen runs` shows their labels)")
    latest = {run.labels.get(CONFIG_LABEL, ""): run for run in runs}
    return sorted(latest.values(), key=lambda r: r.id)


def tune_slo(run: RunRecord) -> LatencyLimit | None:
    """The SLO a tune's run was measured under (its sweep's latency limit)."""
    limit = run.settings.get("latency_limit")
    return None if not limit else LatencyLimit(float(limit["percentile"]), float(limit["limit_us"]))


def _point(run: RunRecord, step: StepRecord, slo: LatencyLimit | None) -> StepPoint | None:
    if step.request_count == 0 or step.interrupted is not None:
        return None
    percentile = slo.percentile if slo else DEFAULT_PERCENTILE
    latency_us = LatencyHistogram.decode(step.histogram_bytes).percentile_us(percentile)
    level = step.request_rate if step.request_rate is not None else float(step.concurrency)
    meets = slo is None or latency_us <= slo.limit_us  # as the sweep's own limit reads it
    config = run.labels.get(CONFIG_LABEL, "")
    return StepPoint(config, run.id, level, step.throughput, latency_us / 1000, meets)


def config_result(store: RunStore, run: RunRecord) -> ConfigResult:
    """One configuration's run read back: each step's throughput and latency against the SLO."""
    slo = tune_slo(run)
    points = (_point(run, step, slo) for step in store.steps(run.id))
    kept = tuple(p for p in points if p is not None)
    return ConfigResult(run.labels.get(CONFIG_LABEL, ""), run.id, run.status, kept, run.model_config)


def load_tune(store: RunStore, tune_id: str) -> TuneResult:
    runs = tune_runs(store, tune_id)
    configs = tuple(config_result(store, run) for run in runs)
    return TuneResult(tune_id, runs[0].model, tune_slo(runs[0]), configs)


def finished_configs(store: RunStore, tune_id: str) -> dict[str, ConfigResult]:
    """The configurations whose runs completed, by name: what a resumed tune does not measure again."""
    done = [r for r in tune_runs(store, tune_id) if r.status == RunStatus.COMPLETED]
    return {r.labels.get(CONFIG_LABEL, ""): config_result(store, r) for r in done}


def config_pbtxt(config: Mapping[str, Any]) -> str:
    """A served config (the JSON Triton answers) as the text of a ``config.pbtxt``."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    message = json_format.ParseDict(dict(config), model_config_pb2.ModelConfig(), ignore_unknown_fields=True)
    return str(text_format.MessageToString(message))


def result_dict(result: TuneResult) -> dict[str, Any]:
    """The JSON form: every configuration, the front, the best and its config.pbtxt."""
    winner = result.winner

    def point(p: StepPoint) -> dict[str, Any]:
        return {
            "config": p.config,
            "run_id": p.run_id,
            "level": p.level,
            "throughput": p.throughput,
            f"p{result.percentile:g}_ms": p.latency_ms,
            "meets_slo": p.meets,
        }

    return {
        "tune": result.tune_id,
        "model": result.model,
        "slo": str(result.slo) if result.slo else None,
        "configs": [
            {
                "config": c.config,
                "run_id": c.run_id,
                "status": c.status,
                "best": None if c.best is None else point(c.best),
                "steps": [point(p) for p in c.points],
            }
            for c in result.configs
        ],
        "pareto": [point(p) for p in result.pareto],
        "best": None if winner is None else point(winner[1]),
        "config_pbtxt": None if winner is None else config_pbtxt(winner[0].model_config),
    }


def summary_rows(result: TuneResult) -> list[dict[str, Any]]:
    """One row per configuration for the console and the report, best first."""
    rows = []
    for config in sorted(result.configs, key=lambda c: rank(c.best), reverse=True):
        best = config.best
        rows.append(
            {
                "configuration": config.config,
                "run": config.run_id,
                "best load": "-" if best is None else f"{best.level:g}",
                "throughput (infer/s)": "-" if best is None else f"{best.throughput:.1f}",
                f"p{result.percentile:g} (ms)": "-" if best is None else f"{best.latency_ms:.2f}",
                "verdict": _verdict(config, result.slo),
            }
        )
    return rows


def front_rows(result: TuneResult) -> list[dict[str, Any]]:
    """The Pareto front, lowest latency first: what each more request per second costs."""
    return [
        {
            f"p{result.percentile:g} (ms)": f"{p.latency_ms:.2f}",
            "throughput (infer/s)": f"{p.throughput:.1f}",
            "load": f"{p.level:g}",
            "configuration": p.config,
            "run": p.run_id,
        }
        for p in result.pareto
    ]


def _verdict(config: ConfigResult, slo: LatencyLimit | None) -> str:
    if config.status != RunStatus.COMPLETED:
        return f"run {config.status}"
    if config.best is None:
        return f"misses {slo} at every load" if slo else "no requests"
    return "meets the SLO" if slo else "measured"
