"""``compare`` warns when the runs were measured differently, and does not judge a change within their noise.

Runs are written by hand to a tmp SQLite store, with the settings a sweep stores
(``SweepSettings.to_dict()``), the model config as Triton's gRPC and HTTP APIs give it,
and measurement windows whose spread is the runs' noise.
"""

from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from analysis import Comparison, Thresholds, Verdict, junit_xml, load_comparison
from analysis.compare import Noise, combined_noise
from analysis.differences import SettingDifference, setting_differences
from loadgen.cli import main
from loadgen.config import MeasurementSettings, SweepSettings
from loadgen.histogram import LatencyHistogram
from loadgen.results import RunInfo, RunStatus, StepResult, WindowResult
from loadgen.storage import RunStore

T0 = datetime(2024, 11, 28, 12, 0, 0, tzinfo=UTC)
DURATION_S = 10.0
LATENCIES = [float(v) for v in np.random.default_rng(1).lognormal(8.0, 0.4, 2000)]
MEAN_US = 1000.0

# Triton 2.51's config of the demo identity model, as each API returns it: gRPC leaves defaults
# out and writes 64-bit integers as strings; HTTP writes every field
GRPC_CONFIG: dict[str, Any] = {
    "backend": "python",
    "default_model_filename": "model.py",
    "dynamic_batching": {"preferred_batch_size": [64]},
    "input": [{"data_type": "TYPE_FP32", "dims": ["16"], "name": "INPUT0"}],
    "instance_group": [{"count": 1, "kind": "KIND_CPU", "name": "identity_0"}],
    "max_batch_size": 64,
    "name": "identity",
    "optimization": {"input_pinned_memory": {"enable": True}, "output_pinned_memory": {"enable": True}},
    "output": [{"data_type": "TYPE_FP32", "dims": ["16"], "name": "OUTPUT0"}],
    "version_policy": {"latest": {"num_versions": 1}},
}
HTTP_CONFIG: dict[str, Any] = {
    "backend": "python",
    "batch_input": [],
    "batch_output": [],
    "cc_model_filenames": {},
    "default_model_filename": "model.py",
    "dynamic_batching": {
        "default_priority_level": 0,
        "default_queue_policy": {
            "allow_timeout_override": False,
            "default_timeout_microseconds": 0,
            "max_queue_size": 0,
            "timeout_action": "REJECT",
        },
        "max_queue_delay_microseconds": 0,
        "preferred_batch_size": [64],
        "preserve_ordering": False,
        "priority_levels": 0,
        "priority_queue_policy": {},
    },
    "input": [
        {
            "allow_ragged_batch": False,
            "data_type": "TYPE_FP32",
            "dims": [16],
            "format": "FORMAT_NONE",
            "is_non_linear_format_io": False,
            "is_shape_tensor": False,
            "name": "INPUT0",
            "optional": False,
        }
    ],
    "instance_group": [
        {
            "count": 1,
            "gpus": [],
            "host_policy": "",
            "kind": "KIND_CPU",
            "name": "identity_0",
            "passive": False,
            "profile": [],
            "secondary_devices": [],
        }
    ],
    "max_batch_size": 64,
    "metric_tags": {},
    "model_warmup": [],
    "name": "identity",
    "optimization": {
        "eager_batching": False,
        "gather_kernel_buffer_threshold": 0,
        "input_pinned_memory": {"enable": True},
        "output_pinned_memory": {"enable": True},
        "priority": "PRIORITY_DEFAULT",
    },
    "output": [
        {
            "data_type": "TYPE_FP32",
            "dims": [16],
            "is_non_linear_format_io": False,
            "is_shape_tensor": False,
            "label_filename": "",
            "name": "OUTPUT0",
        }
    ],
    "parameters": {},
    "platform": "",
    "runtime": "",
    "version_policy": {"latest": {"num_versions": 1}},
}


def settings(**changes: Any) -> dict[str, Any]:
    """What a sweep of identity stores, with ``changes`` to its fields."""
    return SweepSettings(**{"model": "identity", "levels": (1, 2), **changes}).to_dict()


@dataclasses.dataclass(frozen=True)
class Step:
    concurrency: int
    throughput: float
    latency: float = 1.0
    """Scale of the step's latencies (1.2: every latency 20% slower)."""
    windows: Sequence[float] = ()
    """Relative deviations of the windows' throughput from the step's, e.g. (-0.06, 0, 0.06)."""
    latency_windows: Sequence[float] | None = None
    """Those of their mean latency (None: the same as ``windows``)."""


def step_result(index: int, step: Step, rate: float | None) -> StepResult:
    hist = LatencyHistogram()
    hist.record_many_us([v * step.latency for v in LATENCIES])
    spread = step.windows if step.latency_windows is None else step.latency_windows
    windows = [
        WindowResult(
            duration_s=1.0,
            request_count=round(step.throughput * (1 + t)),
            inference_count=round(step.throughput * (1 + t)),
            error_count=0,
            mean_latency_us=MEAN_US * step.latency * (1 + lat),
        )
        for t, lat in zip(step.windows, spread, strict=True)
    ]
    return StepResult(
        index=index,
        concurrency=step.concurrency,
        started_at=T0,
        duration_s=DURATION_S,
        request_count=hist.count,
        inference_count=round(step.throughput * DURATION_S),
        histogram=hist,
        stable=True,
        window_count=len(windows),
        windows=windows,
        request_rate=rate,
    )


def add_run(
    store: RunStore,
    steps: Sequence[Step],
    *,
    stored: dict[str, Any] | None = None,
    model_config: dict[str, Any] | None = None,
    triton: str = "2.51.0",
    model_version: str = "1",
    rates: Sequence[float] | None = None,
) -> int:
    info = RunInfo(
        settings=settings() if stored is None else stored,
        model="identity",
        model_version=model_version,
        scenario="concurrency" if rates is None else "request_rate",
        server_url="localhost:8001",
        model_config=GRPC_CONFIG if model_config is None else model_config,
        model_metadata={},
        server_metadata={"name": "triton", "version": triton},
        host={},
        started_at=T0,
    )
    run_id = store.create_run(info)
    for i, step in enumerate(steps):
        store.add_step(run_id, step_result(i, step, None if rates is None else rates[i]))
    store.finish_run(run_id, RunStatus.COMPLETED)
    return run_id


STEADY = (-0.01, 0.0, 0.01)
"""Windows within 1% of their mean: a quiet run."""
NOISY = (-0.06, 0.0, 0.06)
"""Within 6%: two such runs together are noisy to ±8.5% (the root of 6² + 6²)."""
BASE = [Step(1, 1000.0, windows=STEADY), Step(2, 1800.0, windows=STEADY)]


def compare_pair(
    store: RunStore,
    base: Sequence[Step] = BASE,
    new: Sequence[Step] = BASE,
    thresholds: Thresholds | None = None,
    **new_run: Any,
) -> Comparison:
    base_id, new_id = add_run(store, base), add_run(store, new, **new_run)
    return load_comparison(store, base_id, new_id, thresholds or Thresholds())


# -- settings that differ ----------------------------------------------------------------------------


def test_runs_of_the_same_settings_compare_without_warnings(store: RunStore) -> None:
    # what does not change a measurement may differ freely: labels, metrics, headers, the address
    new = settings(
        labels={"commit": "abc"},
        metrics_url="",
        metrics_families=("my_.*",),
        headers={"Authorization": "Bearer x"},
        url="otherhost:9001",
        measurement=MeasurementSettings(metrics_interval_ms=250),
        latency_limit=None,
        max_error_rate=5.0,
    )
    result = compare_pair(store, stored=new)
    assert result.setting_differences == ()
    assert result.warnings == ()
    assert result.verdict is Verdict.PASS
    assert json.loads(json.dumps(result.to_dict()))["setting_differences"] == []


def test_every_setting_that_changes_the_measurement_is_a_warning(store: RunStore) -> None:
    new = settings(
        protocol="http",
        url="localhost:8000",
        batch_size=8,
        input_data="zero",
        shapes={"INPUT0": (16,)},
        measurement=MeasurementSettings(
            measurement_interval_ms=1000, warmup_ms=0, stability_percentage=5.0, max_windows=4
        ),
        workers=4,
        request_timeout_s=0.0,
        validate=True,
    )
    result = compare_pair(store, stored=new, model_version="2", triton="2.52.0")
    assert result.setting_differences == (
        SettingDifference("protocol", "grpc", "http"),
        SettingDifference("model version", "1", "2"),
        SettingDifference("batch size", "1", "8"),
        SettingDifference("input data", "random", "zero"),
        SettingDifference("input shapes", "the model's own", "INPUT0 16"),
        SettingDifference("measurement interval", "5000 ms", "1000 ms"),
        SettingDifference("warm-up", "1000 ms", "0 ms"),
        SettingDifference("stability percentage", "10%", "5%"),
        SettingDifference("max windows per step", "10", "4"),
        SettingDifference("workers", "auto", "4"),
        SettingDifference("request timeout", "30 s", "none"),
        SettingDifference("answer validation (--validate)", "off", "on"),
        SettingDifference("Triton version", "2.51.0", "2.52.0"),
    )  # the gRPC client is not compared once a run is HTTP's; the seed not once an input is not random
    assert result.warnings[2] == (
        "the runs differ in batch size: 1 (run 1) vs 8 (run 2): the comparison may not be like for like"
    )
    assert len(result.warnings) == len(result.setting_differences)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["setting_differences"][2] == {"setting": "batch size", "base": "1", "new": "8"}
    assert data["warnings"] == list(result.warnings)


def test_grpc_client_tls_and_seed_count_only_where_they_apply(store: RunStore) -> None:
    aio = settings(grpc_client="aio", seed=7)
    assert [d.setting for d in compare_pair(store, stored=aio).setting_differences] == ["gRPC client", "seed"]
    # the seed of data read from a file changes nothing
    base_run = add_run(store, BASE, stored=settings(input_data="zero"))
    new_run = add_run(store, BASE, stored=settings(input_data="zero", seed=7))
    assert load_comparison(store, base_run, new_run).setting_differences == ()

    with_tls = {**settings(), "tls": {"ca": "/etc/ca.pem", "cert": None, "key": None, "insecure": False}}
    other_ca = {**with_tls, "tls": {**with_tls["tls"], "ca": "/other/ca.pem"}}
    tls_run, other_run, plain = (add_run(store, BASE, stored=s) for s in (with_tls, other_ca, settings()))
    assert load_comparison(store, tls_run, other_run).setting_differences == ()  # which files: no matter
    assert load_comparison(store, plain, tls_run).setting_differences == (
        SettingDifference("TLS", "off", "on"),
    )


def test_open_loop_settings_are_compared_for_request_rate_runs_only(store: RunStore) -> None:
    poisson = settings(distribution="poisson", max_in_flight=16)
    closed = compare_pair(store, stored=poisson)
    assert closed.setting_differences == ()  # a closed loop has no schedule
    base_id = add_run(store, BASE, stored=settings(scenario="request_rate"), rates=[100.0, 200.0])
    new_id = add_run(
        store, BASE, stored=settings(scenario="request_rate", **poisson_changes()), rates=[100.0, 200.0]
    )
    assert load_comparison(store, base_id, new_id).setting_differences == (
        SettingDifference("send distribution", "constant", "poisson"),
        SettingDifference("max in flight", "1024", "16"),
        SettingDifference("ramp", "none", "from 10/s over 5 s"),
    )


def poisson_changes() -> dict[str, Any]:
    return {
        "distribution": "poisson",
        "max_in_flight": 16,
        "ramp_from": 10.0,
        "ramp_s": 5.0,
        "levels": (100.0,),
    }


def test_settings_older_runs_did_not_store_are_not_differences(store: RunStore) -> None:
    old = settings()
    old["measurement"] = {**old["measurement"], "max_trials": old["measurement"].pop("max_windows")}
    del old["workers"]
    new = settings(workers=2)
    assert compare_pair(store, stored=new).setting_differences[0].setting == "workers"
    base_id, new_id = add_run(store, BASE, stored=old), add_run(store, BASE, stored=new)
    assert load_comparison(store, base_id, new_id).setting_differences == ()  # max_trials is max_windows

    empty = add_run(store, BASE, stored={}, model_config={})
    assert load_comparison(store, empty, new_id).setting_differences == (), "nothing stored: nothing known"


def test_the_model_config_as_grpc_and_http_give_it_is_the_same(store: RunStore) -> None:
    assert compare_pair(store, model_config=HTTP_CONFIG).setting_differences == ()


def test_the_servers_model_config_that_differs_is_a_warning(store: RunStore) -> None:
    config = {
        **HTTP_CONFIG,
        "max_batch_size": 8,
        "instance_group": [{**HTTP_CONFIG["instance_group"][0], "count": 2, "name": "other_name"}],
        "parameters": {"SERVICE_TIME_MS": {"string_value": "40"}},
    }
    config["dynamic_batching"] = {**config["dynamic_batching"], "max_queue_delay_microseconds": 100}
    assert compare_pair(store, model_config=config).setting_differences == (
        SettingDifference("model config max_batch_size", "64", "8"),
        SettingDifference(
            "model config dynamic_batching",
            "on (preferred_batch_size=[64])",
            "on (max_queue_delay_microseconds=100, preferred_batch_size=[64])",
        ),
        SettingDifference("model config instance_group", "1 x CPU", "2 x CPU"),
        SettingDifference("model config parameters", "unset", '{"SERVICE_TIME_MS": {"string_value": 40}}'),
    )
    unbatched = {k: v for k, v in GRPC_CONFIG.items() if k != "dynamic_batching"}
    gpu = {**unbatched, "instance_group": [{"count": "2", "kind": "KIND_GPU", "gpus": [0, 1]}]}
    assert compare_pair(store, model_config=gpu).setting_differences == (
        SettingDifference("model config dynamic_batching", "on (preferred_batch_size=[64])", "off"),
        SettingDifference("model config instance_group", "1 x CPU", "2 x GPU on GPU 0,1"),
    )


def test_setting_differences_go_to_junit_as_properties(store: RunStore) -> None:
    result = compare_pair(store, stored=settings(batch_size=8))
    xml = ET.fromstring(ET.tostring(junit_xml(result)))
    (suite,) = xml.findall("testsuite")
    props = {p.attrib["name"]: p.attrib["value"] for p in suite.iter("property")}
    assert props["differs: batch size"] == "1 (run 1) vs 8 (run 2)"
    assert props["noise_aware"] == "true" and props["within_noise_steps"] == "0"
    assert "the runs differ in batch size" in (suite.findtext("system-err") or "")


def test_settings_differences_take_the_run_records(store: RunStore) -> None:
    a, b = add_run(store, BASE), add_run(store, BASE, stored=settings(batch_size=2))
    assert setting_differences(store.get_run(a), store.get_run(b)) == (
        SettingDifference("batch size", "1", "2"),
    )
    assert setting_differences(store.get_run(a), store.get_run(a)) == ()


# -- noise -------------------------------------------------------------------------------------------


def test_a_runs_noise_is_the_spread_of_the_windows_its_step_comes_from(store: RunStore) -> None:
    run_id = add_run(
        store,
        [
            Step(1, 1000.0, windows=(-0.1, 0.0, 0.1)),
            Step(2, 1000.0, windows=(0.5, -0.02, 0.0, 0.02), latency_windows=(0.0, 0.0, 0.0, 0.0)),
            Step(4, 1000.0, windows=(0.0,)),
        ],
    )
    first, second, third = (Noise.of(s) for s in store.steps(run_id))
    assert first.throughput_pct == pytest.approx(10.0) and first.latency_pct == pytest.approx(10.0)
    assert second.throughput_pct == pytest.approx(2.0)  # the first window is not one of the step's
    assert second.latency_pct == 0.0
    assert math.isnan(third.throughput_pct) and math.isnan(third.latency_pct)  # one window: unknown
    assert combined_noise(6.0, 8.0) == pytest.approx(10.0)
    assert math.isnan(combined_noise(6.0, math.nan))


def test_a_drop_beyond_the_threshold_but_within_noise_is_no_regression(store: RunStore) -> None:
    noisy = [Step(1, 1000.0, windows=NOISY), Step(2, 1800.0, windows=NOISY)]
    dropped = [Step(1, 930.0, windows=NOISY), Step(2, 1800.0, windows=NOISY)]
    result = compare_pair(store, noisy, dropped)
    first, second = result.steps
    assert first.throughput_change_pct == pytest.approx(-7.0)
    assert first.throughput_noise_pct == pytest.approx(math.hypot(6.0, 6.0), abs=0.05)
    assert first.verdict is Verdict.WITHIN_NOISE and first.within_noise
    assert first.reasons == ("throughput -7.0% (max drop 5%; noise ±8.5%)",)
    assert second.verdict is Verdict.PASS
    assert result.verdict is Verdict.PASS and result.within_noise == (first,)
    assert result.warnings == ()

    strict = load_comparison(store, 1, 2, Thresholds(noise_aware=False))
    assert strict.verdict is Verdict.REGRESSION
    assert strict.steps[0].reasons == ("throughput -7.0% (max drop 5%)",)


def test_the_same_drop_in_quiet_runs_is_a_regression(store: RunStore) -> None:
    result = compare_pair(store, BASE, [Step(1, 930.0, windows=STEADY), BASE[1]])
    assert result.steps[0].throughput_noise_pct == pytest.approx(math.hypot(1.0, 1.0), abs=0.05)
    assert result.steps[0].verdict is Verdict.REGRESSION
    assert result.steps[0].reasons == ("throughput -7.0% (max drop 5%)",)
    assert result.verdict is Verdict.REGRESSION


def test_a_drop_beyond_the_noise_of_one_noisy_run_regresses(store: RunStore) -> None:
    # noise 6% in one run only: ±6.1% together, less than the 7% drop
    result = compare_pair(store, BASE, [Step(1, 930.0, windows=NOISY), BASE[1]])
    assert result.steps[0].verdict is Verdict.REGRESSION


def test_latency_rise_and_improvements_within_noise(store: RunStore) -> None:
    wide = (-0.12, 0.0, 0.12)  # mean latencies within 12% of theirs: ±17% for both runs
    base = [Step(1, 1000.0, windows=STEADY, latency_windows=wide)]
    slower = [Step(1, 1000.0, latency=1.15, windows=STEADY, latency_windows=wide)]
    result = compare_pair(store, base, slower)
    (step,) = result.steps
    assert step.latency(99.0).change_pct == pytest.approx(15.0, abs=0.2)
    assert step.verdict is Verdict.WITHIN_NOISE
    assert step.reasons == ("p99 latency +15.0% (max rise 10%; noise ±17.0%)",)
    assert result.verdict is Verdict.PASS

    faster = [Step(1, 1000.0, latency=0.85, windows=STEADY, latency_windows=wide)]
    improved = load_comparison(store, 1, add_run(store, faster))
    assert improved.steps[0].verdict is Verdict.WITHIN_NOISE
    assert improved.steps[0].reasons == ("p99 latency -15.0% (noise ±17.0%)",)
    assert improved.verdict is Verdict.PASS  # not an improvement either

    much_slower = [Step(1, 1000.0, latency=1.3, windows=STEADY, latency_windows=wide)]
    assert load_comparison(store, 1, add_run(store, much_slower)).verdict is Verdict.REGRESSION


def test_a_real_regression_keeps_the_noise_crossing_as_a_note(store: RunStore) -> None:
    wide = (-0.12, 0.0, 0.12)
    base = [Step(1, 1000.0, windows=STEADY, latency_windows=wide)]
    new = [Step(1, 900.0, latency=1.15, windows=STEADY, latency_windows=wide)]
    (step,) = compare_pair(store, base, new).steps
    assert step.verdict is Verdict.REGRESSION
    assert step.reasons == (
        "throughput -10.0% (max drop 5%)",
        "p99 latency +15.0% (max rise 10%; noise ±17.0%)",
    )


def test_an_unknown_noise_judges_by_the_thresholds_and_says_so(store: RunStore) -> None:
    base = [Step(1, 1000.0), Step(2, 1800.0)]  # no windows stored
    result = compare_pair(store, base, [Step(1, 900.0), Step(2, 1800.0)])
    assert [s.verdict for s in result.steps] == [Verdict.REGRESSION, Verdict.PASS]
    assert math.isnan(result.steps[0].throughput_noise_pct)
    assert result.warnings == (
        "noise unknown at concurrency levels 1 (a step with fewer than 2 measurement windows, "
        "or a window without an answer): judged by the thresholds alone",
    )
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["steps"][0]["noise_pct"]["throughput"] == {"base": None, "new": None, "combined": None}
    # the same steps, strictly judged: noise is not looked at, so nothing to say about it
    assert load_comparison(store, 1, 2, Thresholds(noise_aware=False)).warnings == ()


def test_json_and_junit_of_a_step_within_noise(store: RunStore) -> None:
    result = compare_pair(store, [Step(1, 1000.0, windows=NOISY)], [Step(1, 930.0, windows=NOISY)])
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["verdict"] == "pass" and data["noise_aware"] is True
    (step,) = data["steps"]
    assert step["verdict"] == "within noise"
    assert step["reasons"] == ["throughput -7.0% (max drop 5%; noise ±8.5%)"]
    assert step["noise_pct"]["throughput"]["base"] == pytest.approx(6.0, abs=0.05)
    assert step["noise_pct"]["throughput"]["combined"] == pytest.approx(8.49, abs=0.05)
    assert step["noise_pct"]["latency"]["new"] == pytest.approx(6.0)

    xml = ET.fromstring(ET.tostring(junit_xml(result)))
    assert xml.attrib["failures"] == "0"
    (case,) = xml.iter("testcase")
    assert case.find("failure") is None
    assert (case.findtext("system-out") or "").startswith(
        "within noise (throughput -7.0% (max drop 5%; noise"
    )
    props = {p.attrib["name"]: p.attrib["value"] for p in xml.iter("property")}
    assert props["within_noise_steps"] == "1"


# -- the command ---------------------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_the_command_warns_marks_noise_and_exits_0_for_a_change_within_noise(
    store: RunStore, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = add_run(store, [Step(1, 1000.0, windows=NOISY), Step(2, 1800.0, windows=STEADY)])
    new = add_run(
        store,
        [Step(1, 930.0, windows=NOISY), Step(2, 1800.0, windows=STEADY)],
        stored=settings(batch_size=8),
    )
    code, out, err = run_cli(capsys, "compare", str(base), str(new), "--db", url)
    assert code == 0, out + err
    assert err.splitlines() == [
        f"loadgen: warning: the runs differ in batch size: 1 (run {base}) vs 8 (run {new}): "
        "the comparison may not be like for like"
    ]
    row = next(line for line in out.splitlines() if line.lstrip("│ ").startswith("1 "))
    assert "within noise (throughput -7.0% (max drop 5%; noise ±8.5%))" in row
    assert "±8.5%" in row and "-7.0%" in row
    assert (
        "verdict: pass (0 of 2 matched step(s) regressed; 1 changed within the runs' noise, not judged)"
        in out
    )

    code, out, _ = run_cli(capsys, "compare", str(base), str(new), "--db", url, "--strict")
    assert code == 1
    assert "strict: noise not considered" in out
    assert "verdict: regression (1 of 2 matched step(s) regressed)" in out

    code, out, _ = run_cli(capsys, "compare", str(base), str(new), "--db", url, "--json")
    data = json.loads(out)
    assert code == 0 and data["verdict"] == "pass" and data["steps"][0]["verdict"] == "within noise"
    assert data["setting_differences"] == [{"setting": "batch size", "base": "1", "new": "8"}]
