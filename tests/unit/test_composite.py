"""Composite models without a server: which models an ensemble composes, how their /stats deltas are
stored and read back, and what the breakdown says."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pandas as pd
import pytest

from analysis.frames import composing_frame
from analysis.model_breakdown import composing_csv_frames, model_findings, model_table
from loadgen.composing import composing_models, ensemble_steps, ensemble_versions
from loadgen.engine.step import _composing_deltas
from loadgen.errors import ConfigError, UnknownModel
from loadgen.results import DurationStat, ModelStats, StatsSnapshot
from loadgen.storage import RunStore
from tests.unit.test_storage import run_info, stats, step_result

ENSEMBLE = {
    "platform": "ensemble",
    "ensemble_scheduling": {
        "step": [
            {"model_name": "preprocess", "model_version": "-1"},
            {"model_name": "inner", "model_version": "-1"},
            {"model_name": "preprocess", "model_version": "-1"},  # called twice: kept once
        ]
    },
}
CONFIGS: dict[str, dict[str, Any]] = {
    "preprocess": {"backend": "python"},
    "inner": {"platform": "ensemble", "ensemble_scheduling": {"step": [{"model_name": "resnet"}]}},
    "resnet": {"backend": "python"},
    "tokenizer": {"backend": "python"},
}


class Configs:
    """The configs a server would answer (``model_config``), an unknown name as the server refuses it."""

    async def model_config(self, model: str, version: str = "") -> dict[str, Any]:
        if model not in CONFIGS:
            raise UnknownModel(f"model {model!r} is not available")
        return CONFIGS[model]


def _resolve(model: str, config: dict[str, Any], named: tuple[str, ...] = ()) -> tuple[str, ...]:
    return asyncio.run(composing_models(Configs(), model, config, named))


def test_an_ensembles_steps_are_followed_down_nested_ensembles() -> None:
    assert ensemble_steps(ENSEMBLE) == ["preprocess", "inner"]
    assert ensemble_versions(ENSEMBLE) == {"preprocess": "-1", "inner": "-1"}
    assert ensemble_steps({"backend": "python"}) == []
    assert _resolve("pipeline", ENSEMBLE) == ("preprocess", "resnet")  # "inner" stands for its steps
    named = _resolve("pipeline", ENSEMBLE, ("tokenizer", "resnet"))
    assert named == ("preprocess", "resnet", "tokenizer")


def test_named_composing_models_must_exist_and_not_be_the_model() -> None:
    assert _resolve("bls", {"backend": "python"}, ("preprocess", "resnet")) == ("preprocess", "resnet")
    with pytest.raises(UnknownModel, match="'nosuch'"):
        _resolve("bls", {"backend": "python"}, ("nosuch",))
    with pytest.raises(ConfigError, match="the model being measured"):
        _resolve("bls", {"backend": "python"}, ("bls",))


def _timed(queue_us: float, compute_us: float, n: int = 100) -> ModelStats:
    def d(us: float) -> DurationStat:
        return DurationStat(n, int(n * us * 1000))

    return ModelStats(n, n, d(queue_us + compute_us), DurationStat(), d(queue_us), d(0), d(compute_us), d(0),
                      DurationStat(), DurationStat())  # fmt: skip


def test_a_composing_model_reloaded_mid_step_is_left_out() -> None:
    before = StatsSnapshot(_timed(1, 1), {"a": _timed(10, 10), "b": _timed(10, 10, n=50)})
    after = StatsSnapshot(_timed(1, 1, 200), {"a": _timed(10, 10, n=300), "b": _timed(10, 10, n=5)})
    deltas = _composing_deltas(before, after)
    assert list(deltas) == ["a"] and deltas["a"].inference_count == 200


def test_composing_stats_round_trip_exactly(store: RunStore) -> None:
    run_id = store.create_run(run_info())
    step = dataclasses.replace(
        step_result(0), composing_stats={"preprocess": stats((1, 2)), "resnet": stats()}
    )
    step_id = store.add_step(run_id, step)
    store.add_step(run_id, step_result(1))  # a step without any
    assert store.composing_stats(run_id) == {step_id: {"preprocess": stats((1, 2)), "resnet": stats()}}


def test_the_breakdown_names_the_model_that_takes_the_time(store: RunStore) -> None:
    run_id = store.create_run(run_info())
    for index, (pre, net) in enumerate([((0.1, 1.0), (0.2, 3.0)), ((8.0, 1.0), (0.2, 3.0))]):
        step = dataclasses.replace(
            step_result(index), composing_stats={"preprocess": _timed(*pre), "resnet": _timed(*net)}
        )
        store.add_step(run_id, step)
    steps = store.steps(run_id)
    frame = composing_frame(steps, store.composing_stats(run_id))
    assert list(frame["model"]) == ["preprocess", "resnet"] * 2
    assert frame["share"].tolist() == pytest.approx([1.1 / 4.3, 3.2 / 4.3, 9.0 / 12.2, 3.2 / 12.2])
    found = model_findings(frame)
    assert [f.step_index for f in found] == [0, 1]
    assert found[0].text.startswith(
        "resnet dominates: 74% of the composing models' server time at concurrency 1"
    )
    assert "mostly compute" in found[0].text
    assert found[1].text.startswith("preprocess dominates: 74%") and "mostly queueing" in found[1].text
    steps_frame = pd.DataFrame(
        {
            "step_index": [0, 1],
            "duration_s": [15.0, 15.0],
            "concurrency": [1, 2],
            "request_rate": [float("nan")] * 2,
            "throughput": [50.0, 40.0],
            "server_success_count": [200, 100],
        }
    )
    table = model_table(frame, steps_frame)
    assert table["Queue (ms)"].tolist() == pytest.approx([0.0001, 0.0002, 0.008, 0.0002])
    csv = composing_csv_frames(frame, steps_frame, "concurrency")
    assert list(csv) == ["preprocess", "resnet"]
    preprocess = csv["preprocess"]
    assert list(preprocess.columns) == [
        "Concurrency", "Inferences/Second", "Client Send", "Network+Server Send/Recv", "Server Queue",
        "Server Compute Input", "Server Compute Infer", "Server Compute Output", "Client Recv",
    ]  # fmt: skip
    assert preprocess["Server Queue"].tolist() == [0, 8] and preprocess["Server Compute Infer"].tolist() == [
        1,
        1,
    ]
    assert preprocess["Inferences/Second"].tolist() == [25.0, 40.0]  # 100 of the 200 requests, then all 100
