"""The one settings constructor and its three front-ends, without a server.

The command line, a plan and ``-m name:key=value`` must take the same options and turn
the same values into the same settings; a new option that one front-end misses fails here.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from loadgen.commands import sweep
from loadgen.commands.sweep import CLI_ONLY, parse_model_spec, settings_from_args
from loadgen.config import (
    BY_KEY,
    DERIVED,
    OPTIONS,
    MeasurementSettings,
    SweepSettings,
    build_settings,
    spell_flag,
)
from loadgen.config.options import SETTINGS_FIELDS
from loadgen.errors import ConfigError, SettingsError
from loadgen.plans import PLAN_ONLY, parse_plan
from loadgen.plans.parse import job_keys
from loadgen.tls import TlsSettings
from tests.pki import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _sweep_parser() -> argparse.ArgumentParser:
    sub = argparse.ArgumentParser().add_subparsers()
    sweep.register(sub)
    parser: argparse.ArgumentParser = sub.choices["sweep"]
    return parser


def _cli(*argv: str) -> list[SweepSettings]:
    return settings_from_args(_sweep_parser().parse_args(list(argv)))


# -- the same options everywhere --------------------------------------------------------------------
def test_the_command_line_plans_and_settings_take_the_same_options() -> None:
    dests = {action.dest for action in _sweep_parser()._actions} - {"help"}
    assert dests - set(CLI_ONLY) == set(BY_KEY), "every sweep option is a flag, and every flag an option"
    names = {name for option in OPTIONS for name in option.names if option.key != "model"}
    assert job_keys() - set(PLAN_ONLY) - {"model"} == names, "a plan takes every option's names, and no other"
    assert "model" in job_keys()
    fields = SETTINGS_FIELDS
    set_directly = {option.key for option in OPTIONS} & fields
    assert set_directly | set(DERIVED) == fields, "every settings field comes from an option"
    derived_from = {key for keys in DERIVED.values() for key in keys}
    assert {option.key for option in OPTIONS} - fields <= derived_from, "every option sets something"
    assert all(reason for reason in (*CLI_ONLY.values(), *PLAN_ONLY.values()))


def _samples(tmp: Path, pki: Pki) -> dict[str, tuple[list[str], str]]:
    """Per option: its command-line arguments and its value as a plan writes it."""
    intervals = tmp / "gaps.txt"
    intervals.write_text("1000\n3000\n")
    data = tmp / "data.json"
    data.write_text('{"data": [{"INPUT0": [1, 2, 3, 4]}]}')
    return {
        "model_version": (["-x", "2"], "'2'"),
        "url": (["-u", "h:9001"], "h:9001"),
        "protocol": (["-i", "http"], "http"),
        "grpc_client": (["--grpc-client", "aio"], "aio"),
        "max_connections": (["--max-connections", "4"], "4"),
        "request_timeout_s": (["--request-timeout", "2.5"], "2.5"),
        "retry_unavailable_s": (["--retry-unavailable", "30"], "30"),
        "max_error_rate": (["--max-error-rate", "5%"], "5%"),
        "headers": (["-H", "X-A: b", "-H", "X-C: d"], "{X-A: b, X-C: d}"),
        "shared_memory": (["--shared-memory", "system"], "system"),
        "output_shared_memory_size": (
            ["--shared-memory", "system", "--output-shared-memory-size", "4096"],
            "4096",
        ),
        "sequence_length": (["--sequence-length", "12"], "12"),
        "sequence_length_variation": (["--sequence-length-variation", "10%"], "10%"),
        "num_of_sequences": (["--num-of-sequences", "6"], "6"),
        "sequence_id_range": (["--sequence-id-range", "1000:2000"], "'1000:2000'"),
        "serial_sequences": (["--serial-sequences"], "true"),
        "request_parameters": (
            ["--request-parameter", "priority:1:int", "--request-parameter", "mode:a:b:string"],
            "{priority: 1, mode: 'a:b'}",
        ),
        "composing_models": (["--composing-models", "preprocess,resnet"], "preprocess,resnet"),
        "trace_rate": (["--trace-rate", "10"], "10"),
        "trace_file": (["--trace-file", "/srv/trace.json", "--trace-rate", "5"], "/srv/trace.json"),
        "trace_count": (["--trace-count", "200", "--trace-rate", "5"], "200"),
        "metrics_url": (["--metrics-url", "http://m:1/metrics"], "http://m:1/metrics"),
        "no_metrics": (["--no-metrics"], "true"),
        "metrics_interval_ms": (["--metrics-interval", "250"], "250"),
        "metrics_families": (
            ["--metrics-family", "custom_.*", "--metrics-family", "app_(a|b)"],
            "['custom_.*', 'app_(a|b)']",
        ),
        "ssl": (["--ssl"], "true"),
        "ssl_ca": (["--ssl-ca", str(pki.ca)], str(pki.ca)),
        "ssl_cert": (["--ssl-cert", str(pki.client_cert), "--ssl-key", str(pki.client_key)], ""),
        "ssl_key": ([], ""),  # with ssl_cert
        "ssl_insecure": (["-i", "http", "--ssl-insecure"], "true"),
        "concurrency": (["--concurrency", "1..8"], "1..8"),
        "request_rate": (["--request-rate", "10,20"], "10,20"),
        "request_intervals": (["--request-intervals", str(intervals)], str(intervals)),
        "ramp": (["--ramp", "10:100:5"], "'10:100:5'"),
        "distribution": (["--request-rate", "10", "--distribution", "poisson"], "poisson"),
        "max_in_flight": (["--max-in-flight", "7"], "7"),
        "pacing": (["--request-rate", "10", "--pacing", "spin"], "spin"),
        "workers": (["--workers", "3"], "3"),
        "ray": (["--ray", "auto"], "auto"),
        "latency_limit": (["--latency-limit", "p95=20ms"], "p95=20ms"),
        "search": (["--latency-limit", "50ms", "--search"], "true"),
        "measurement_interval_ms": (["-p", "700"], "700"),
        "warmup_ms": (["--warmup", "0"], "0"),
        "stability_percentage": (["-s", "2.5"], "2.5"),
        "max_windows": (["-r", "4"], "4"),
        "stop_when": (["--stop-when", "p99:2%"], "'p99:2%'"),
        "min_step_requests": (["--min-step-requests", "50"], "50"),
        "min_step_ms": (["--min-step-time", "2s"], "2s"),
        "confidence": (["--confidence", "90%"], "90%"),
        "detect_warmup": (["--detect-warmup"], "true"),
        "repeats": (["--repeats", "3"], "3"),
        "batch_size": (["-b", "4"], "4"),
        "input_data": (["--input-data", str(data)], str(data)),
        "shapes": (["--shape", "TOKENS:5,6", "--shape", "MASK:5"], "{TOKENS: [5, 6], MASK: 5}"),
        "seed": (["--seed", "9"], "9"),
        "validate": (["--validate"], "true"),
        "streaming": (["--streaming"], "true"),
        "cancel_after_ms": (["--streaming", "--cancel-after-ms", "250"], "250"),
        "token_output": (["--streaming", "--token-output", "TOKENS"], "TOKENS"),
        "cancel_after_responses": (["--streaming", "--cancel-after-responses", "3"], "3"),
        "cancel_share_pct": (
            ["--streaming", "--cancel-after-responses", "3", "--cancel-share", "25%"],
            "25%",
        ),
        "tolerances": (
            ["--tolerance", "FP16=1e-2", "--tolerance", "fp32=1e-3,1e-4"],
            "{FP16: 1e-2, fp32: '1e-3,1e-4'}",
        ),
        "labels": (["--label", "team=a", "--label", "env=ci"], "{team: a, env: ci}"),
    }


_COMPANIONS = {
    "ssl_cert": ("ssl_key",),
    "ssl_insecure": ("protocol",),
    "distribution": ("request_rate",),
    "pacing": ("request_rate",),
    "search": ("latency_limit",),
    "cancel_after_ms": ("streaming",),
    "token_output": ("streaming",),
    "cancel_after_responses": ("streaming",),
    "cancel_share_pct": ("streaming", "cancel_after_responses"),
    "output_shared_memory_size": ("shared_memory",),
    "trace_file": ("trace_rate",),
    "trace_count": ("trace_rate",),
}
"""Options a sample needs beside it (in the plan, the same values as on the command line)."""


def test_every_option_gives_the_same_settings_from_the_command_line_a_plan_and_m(
    tmp_path: Path, pki: Pki
) -> None:
    samples = _samples(tmp_path, pki)
    assert set(samples) == set(BY_KEY) - {"model"}, "a sample for every option"
    for key, (argv, yaml_value) in samples.items():
        if not argv:
            continue
        (from_cli,) = _cli("-m", "m", *argv)
        assert from_cli != SweepSettings(model="m", levels=(1,)), f"{key} changed nothing"
        plan_lines = [f"{name}: {value}" for name, value in _plan_values(key, argv, yaml_value, pki)]
        text = "jobs:\n  j:\n    model: m\n" + "".join(f"    {line}\n" for line in plan_lines)
        (job,) = parse_plan(text, tmp_path / "p.yaml").jobs
        (from_plan,) = job.sweeps
        plan_labels = {"plan": "p", "job": "j"}
        assert from_plan == dataclasses.replace(from_cli, labels={**from_cli.labels, **plan_labels}), key
        shared = [a for a in argv if a.startswith("-i") or a == "http"]
        override = ",".join(
            f"{name.replace('_', '-')}={_m_value(value)}"
            for name, value in _plan_values(key, argv, yaml_value, pki)
            if name != "protocol"
        )
        if key in ("headers", "shapes", "tolerances", "labels", "metrics_families", "request_parameters"):
            override = ",".join(f"{key}={item}" for item in argv[1::2])
        (_, from_m) = _cli("-m", "other", "-m", f"m:{override}", *shared)
        assert from_m == from_cli, key


def _plan_values(key: str, argv: list[str], yaml_value: str, pki: Pki) -> list[tuple[str, str]]:
    values = [(key, yaml_value)]
    if key == "ssl_cert":
        values = [("ssl_cert", str(pki.client_cert)), ("ssl_key", str(pki.client_key))]
    else:
        for companion in _COMPANIONS.get(key, ()):
            option = BY_KEY[companion]
            if option.switch:
                values.append((companion, "true"))
                continue
            values.append((companion, argv[argv.index(next(f for f in option.flags if f in argv)) + 1]))
    return values


def _m_value(value: str) -> str:
    return value.strip("'")


# -- the constructor --------------------------------------------------------------------------------
def test_defaults_and_derived_values() -> None:
    settings = build_settings({"model": "m"})
    assert settings == SweepSettings(model="m", levels=(1,))
    assert build_settings({"model": "m", "protocol": "http"}).url == "localhost:8000"
    assert build_settings({"model": "m", "url": "https://h", "protocol": "http"}).tls == TlsSettings()
    ramp = build_settings({"model": "m", "ramp": "100:400:10"})
    assert (ramp.scenario, ramp.levels, ramp.ramp_from, ramp.ramp_s) == (
        "request_rate",
        (400.0,),
        100.0,
        10.0,
    )
    assert build_settings({"model": "m", "no_metrics": True}).resolved_metrics_url is None
    assert build_settings({"model": "m", "metrics_url": "off"}).resolved_metrics_url is None
    assert build_settings({"model": "m", "max_trials": "3"}).measurement == MeasurementSettings(max_windows=3)


def test_layers_merge_mappings_and_a_later_load_replaces_the_earlier() -> None:
    base = {"request_rate": "10..20:10", "distribution": "poisson", "labels": ["a=1", "b=2"]}
    settings = build_settings(base, {"concurrency": "4", "labels": {"b": "3"}}, {"model": "m"})
    assert (settings.scenario, settings.levels, settings.distribution) == ("concurrency", (4,), "constant")
    assert settings.labels == {"a": "1", "b": "3"}
    rate = build_settings(base, {"request_rate": "5"}, {"model": "m"})
    assert (rate.levels, rate.distribution) == ((5.0,), "poisson")


def test_every_problem_is_collected_and_names_its_option() -> None:
    with pytest.raises(SettingsError) as caught:
        build_settings(
            {
                "model": "m",
                "batch_size": "0",
                "concurrency": "4",
                "request_rate": "5",
                "seed": "x",
                "speed": "1",
            }
        )
    keys = [problem.key for problem in caught.value.problems]
    assert keys == ["seed", "speed", "request_rate", "batch_size"]
    rendered = caught.value.render(spell_flag)
    assert "--seed must be a whole number, got 'x'" in rendered
    assert "unknown option 'speed' (did you mean 'seed'?)" in rendered
    assert "give only one of --concurrency, --request-rate, --request-intervals and --ramp" in rendered
    assert "--batch-size must be >= 1, got 0" in rendered and "\n" not in rendered
    with pytest.raises(SettingsError, match="request_timeout_s is given twice"):
        build_settings({"model": "m", "request_timeout": "1", "request_timeout_s": "2"})
    with pytest.raises(SettingsError) as caught:
        build_settings({"model": "m", "search": "true"})
    assert "--search needs --latency-limit pNN=X" in caught.value.render(spell_flag)


def test_rules_hold_however_settings_are_made() -> None:
    with pytest.raises(SettingsError, match="batch_size must be >= 1"):
        SweepSettings(model="m", levels=(1,), batch_size=0)
    with pytest.raises(SettingsError, match="max_windows must be >= 1"):
        MeasurementSettings(max_windows=0)
    valid = SweepSettings(model="m", levels=(1,))
    with pytest.raises(SettingsError, match="workers must be within"):
        dataclasses.replace(valid, workers=0)


def test_headers_are_kept_for_requests_but_stored_by_name_only() -> None:
    (settings,) = _cli("-m", "m", "-H", "Authorization: Bearer s3cret")
    assert settings.headers == {"Authorization": "Bearer s3cret"}
    assert "s3cret" not in repr(settings) and "s3cret" not in repr(settings.to_dict())
    assert settings.to_dict()["header_names"] == ["Authorization"]
    assert "header_names" not in SweepSettings(model="m", levels=(1,)).to_dict()


# -- -m NAME:key=value ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("b", ("b", {})),
        ("b:concurrency=1..4", ("b", {"concurrency": "1..4"})),
        ("b:concurrency=1,2,4,batch-size=2", ("b", {"concurrency": "1,2,4", "batch-size": "2"})),
        ("b:tolerance=FP32=1e-4,1e-5,seed=3", ("b", {"tolerance": "FP32=1e-4,1e-5", "seed": "3"})),
        ("b:latency_limit=p99=5ms", ("b", {"latency_limit": "p99=5ms"})),
        ("b:label=x=1,label=y=2", ("b", {"label": ["x=1", "y=2"]})),
    ],
)
def test_model_specs(item: str, expected: tuple[str, dict[str, str | list[str]]]) -> None:
    assert parse_model_spec(item) == expected


def test_per_model_values_and_their_errors() -> None:
    a, b = _cli(
        "-m",
        "a",
        "-m",
        "b:concurrency=2,request-timeout=5,label=x=y",
        "--concurrency",
        "1..4",
        "--label",
        "t=1",
    )
    assert (a.levels, a.request_timeout_s, a.labels) == ((1, 2, 4), 30.0, {"t": "1"})
    assert (b.levels, b.request_timeout_s, b.labels) == ((2,), 5.0, {"t": "1", "x": "y"})
    for item, message in (
        ("b:speed=9", "bad -m 'b:speed=9': unknown option 'speed'"),
        ("b:batch-size=0", "bad -m 'b:batch-size=0': batch-size must be >= 1, got 0"),
        (":concurrency=1", "expected MODEL or MODEL:key=value"),
        ("b:model=c", "the model is named before the ':'"),
    ):
        with pytest.raises(ConfigError) as caught:
            _cli("-m", "a", "-m", item)
        assert message in str(caught.value)
    with pytest.raises(ConfigError, match="^--batch-size must be >= 1, got 0$"):  # once, spelled as a flag
        _cli("-m", "a", "-m", "b", "--batch-size", "0")


# -- plans ------------------------------------------------------------------------------------------
def test_a_plan_job_measures_several_models_together_each_with_its_own_values(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        concurrency: 1..4
        request_timeout: 5
        jobs:
          both:
            models: [identity, {model: fixed_latency, concurrency: 2, batch_size: 1}]
            latency_limit: p99=50ms
            search: true
        """
    )
    (job,) = parse_plan(text, tmp_path / "p.yaml").jobs
    identity, fixed = job.sweeps
    assert (identity.levels, fixed.levels) == ((1, 2, 4), (2,))
    assert identity.request_timeout_s == fixed.request_timeout_s == 5.0
    assert identity.search and identity.latency_limit is not None


def test_plan_headers_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOADGEN_TEST_TOKEN", "s3cret")
    text = "headers: {Authorization: 'Bearer ${LOADGEN_TEST_TOKEN}'}\njobs:\n  j: {model: m}\n"
    (sweep_settings,) = parse_plan(text, tmp_path / "p.yaml").jobs[0].sweeps
    assert sweep_settings.headers == {"Authorization": "Bearer s3cret"}
    monkeypatch.delenv("LOADGEN_TEST_TOKEN")
    with pytest.raises(ConfigError, match="p.yaml:1: the plan: header value needs environment variable"):
        parse_plan(text, tmp_path / "p.yaml")


def test_plan_tls_files_are_relative_to_the_plan(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "ca.pem").write_bytes(pki.ca.read_bytes())
    text = "jobs:\n  j: {model: m, ssl_ca: ca.pem}\n"
    (settings,) = parse_plan(text, tmp_path / "p.yaml").jobs[0].sweeps
    assert settings.tls == TlsSettings(ca_file=str(tmp_path / "ca.pem"))
    with pytest.raises(ConfigError, match=r"p.yaml:2: job 'j': ssl_ca .*nope.pem: cannot read it"):
        parse_plan("jobs:\n  j: {model: m, ssl_ca: nope.pem}\n", tmp_path / "p.yaml")


def test_importing_the_settings_loads_no_engine_or_results() -> None:
    code = (
        "import sys, loadgen.config; "
        "bad = [m for m in sys.modules if m.startswith(('loadgen.engine', 'loadgen.results', 'numpy'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# -- durations take units ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "field", "expected"),
    [
        (["-p", "2s"], "measurement_interval_ms", 2000),
        (["-p", "1.5s"], "measurement_interval_ms", 1500),
        (["-p", "750ms"], "measurement_interval_ms", 750),
        (["-p", "750"], "measurement_interval_ms", 750),  # a plain number keeps perf_analyzer's ms
        (["-p", "1m"], "measurement_interval_ms", 60_000),
        (["--warmup", "0s"], "warmup_ms", 0),
        (["--warmup", "2500us"], None, None),  # 2.5 ms is not whole: refused below
        (["--metrics-interval", "0.25s"], "metrics_interval_ms", 250),
        (["--request-timeout", "500ms"], "request_timeout_s", 0.5),
        (["--request-timeout", "2"], "request_timeout_s", 2.0),
        (["--retry-unavailable", "2m"], "retry_unavailable_s", 120.0),
        (["--ramp", "10:100:1.5m"], "ramp_s", 90.0),
    ],
)
def test_every_duration_option_takes_units_and_plain_numbers_keep_their_unit(
    argv: list[str], field: str | None, expected: float | None
) -> None:
    if field is None:
        with pytest.raises(ConfigError, match=r"--warmup must be a whole number of milliseconds.*2\.5 ms"):
            _cli("-m", "m", *argv)
        return
    (settings,) = _cli("-m", "m", *argv)
    owner = settings.measurement if hasattr(settings.measurement, field) else settings
    assert getattr(owner, field) == expected
