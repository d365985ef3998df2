"""The one settings constructor: option values in, a valid :class:`SweepSettings` out.

The command line, plans and ``-m name:key=value`` all end here, each with its values
keyed by option (see :mod:`loadgen.config.options`), so a default, a derived value or
a rule is written once. Values come in layers, later ones winning: a plan's shared
values then a job's, or the command line then one ``-m`` model's own. Every problem
is collected (a plan lists them all with their lines) and raised together as a
:class:`SettingsError` whose problems name the option at fault.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from loadgen.config.measurement import MeasurementSettings
from loadgen.config.options import BY_KEY, BY_NAME, LOAD_KEYS, MEASUREMENT_KEYS, SETTINGS_FIELDS, TLS_KEYS
from loadgen.config.settings import DEFAULT_URLS, SweepSettings
from loadgen.config.values import OPTION
from loadgen.errors import ConfigError, SettingProblem, SettingsError
from loadgen.tls import TlsSettings, url_scheme

OPEN_LOOP_KEYS = ("request_rate", "ramp")
"""The loads a ``distribution`` applies to (a replay has its own gaps)."""
MERGED_KEYS = tuple(option.key for option in BY_KEY.values() if option.repeat and option.key != "model")
"""Mapping-valued options: layers add to them key by key instead of replacing them."""


def option_key(name: str) -> str | None:
    """The key of the option spelled ``name`` (a key or a flag's name; dashes allowed)."""
    option = BY_NAME.get(name.replace("-", "_"))
    return None if option is None else option.key


def unknown_option(name: str, where: str = "") -> SettingProblem:
    close = difflib.get_close_matches(name.replace("-", "_"), list(BY_NAME), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return SettingProblem(name, f"unknown option {name!r}{where}{hint}")


def parse_layer(layer: Mapping[str, object]) -> tuple[dict[str, Any], list[SettingProblem]]:
    """Each value of one layer parsed by its option; None means not given."""
    typed: dict[str, Any] = {}
    problems: list[SettingProblem] = []
    for name, raw in layer.items():
        if raw is None:
            continue
        key = option_key(name)
        if key is None:
            problems.append(unknown_option(name))
            continue
        if key in typed:
            problems.append(SettingProblem(key, f"{{{key}}} is given twice (as {name!r} too)"))
            continue
        try:
            typed[key] = BY_KEY[key].parse(raw)
        except SettingsError as exc:  # a value object's own rules (LatencyLimit)
            problems += exc.problems
        except ConfigError as exc:
            problems.append(SettingProblem(key, _named(key, str(exc))))
    return typed, problems


def _named(key: str, message: str) -> str:
    """A parser's message with the option named: where it says so, else in front."""
    if OPTION in message:
        return message.replace(OPTION, f"{{{key}}}")
    return f"{{{key}}}{' ' if message.startswith(('must ', 'is ')) else ': '}{message}"


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base`` (parsed values): a load given in ``override`` replaces the
    base's load (and its distribution, unless both are open loop, and its pacing, unless the
    override is open loop); mappings merge by key, and
    lists (``--metrics-family``) add up."""
    merged = dict(base)
    if any(key in override for key in LOAD_KEYS):
        for key in LOAD_KEYS:
            merged.pop(key, None)
        if not any(key in override for key in OPEN_LOOP_KEYS):
            merged.pop("distribution", None)
        if "concurrency" in override:
            merged.pop("pacing", None)
    for key, value in override.items():
        if key in MERGED_KEYS and isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = {**merged[key], **value}
        elif key in MERGED_KEYS and isinstance(value, tuple) and isinstance(merged.get(key), tuple):
            value = tuple(dict.fromkeys((*merged[key], *value)))  # in order, once each
        merged[key] = value
    return merged


def build_settings(*layers: Mapping[str, object]) -> SweepSettings:
    """Settings from option values (later layers win); :class:`SettingsError` lists every problem."""
    typed: dict[str, Any] = {}
    problems: list[SettingProblem] = []
    for layer in layers:
        values, found = parse_layer(layer)
        typed = merge(typed, values)
        problems += found
    fields = _derive(typed, problems)
    try:
        settings = SweepSettings(**fields)
    except SettingsError as exc:
        problems += exc.problems
    if problems:
        raise SettingsError(dict.fromkeys(problems))  # in order, each once
    return settings


def _derive(typed: Mapping[str, Any], problems: list[SettingProblem]) -> dict[str, Any]:
    """The fields of the settings: the load's scenario and levels, defaults that depend on
    other values (URL per protocol, TLS from the URL, metrics off) and the nested settings."""
    fields: dict[str, Any] = {key: typed[key] for key in SETTINGS_FIELDS & typed.keys()}
    fields.setdefault("model", "")
    loads = [key for key in LOAD_KEYS if key in typed]
    if len(loads) > 1:
        message = "give only one of {concurrency}, {request_rate}, {request_intervals} and {ramp}"
        problems.append(SettingProblem(loads[1], message))
    load = loads[0] if loads else "concurrency"
    if load == "ramp":
        start, end, seconds = typed["ramp"]
        fields.update(levels=(end,), scenario="request_rate", ramp_from=start, ramp_s=seconds)
    elif load == "request_intervals":
        intervals = typed["request_intervals"]
        rate = 1e6 / (sum(intervals) / len(intervals))
        fields.update(levels=(rate,), scenario="request_rate", request_intervals_us=intervals)
    elif load == "request_rate":
        fields.update(levels=typed["request_rate"], scenario="request_rate")
    else:
        fields.update(levels=typed.get("concurrency", (1,)), scenario="concurrency")
    if "distribution" in typed and load not in OPEN_LOOP_KEYS:
        message = "{distribution} applies to {request_rate} and {ramp} only"
        problems.append(SettingProblem("distribution", message))
    if "pacing" in typed and fields["scenario"] != "request_rate":
        message = "{pacing} applies to open-loop loads only ({request_rate}, {ramp}, {request_intervals})"
        problems.append(SettingProblem("pacing", message))
    if typed.get("trace_rate") and "grpc_client" not in typed:
        fields["grpc_client"] = "aio"  # Triton 2.51 crashes tracing the lean client's calls (trace_rules)
    protocol = typed.get("protocol", "grpc")
    fields["url"] = typed.get("url") or DEFAULT_URLS.get(protocol, DEFAULT_URLS["grpc"])
    if typed.get("no_metrics"):
        fields["metrics_url"] = ""
    fields["tls"] = _tls(typed, fields["url"], problems)
    try:
        fields["measurement"] = MeasurementSettings(**{k: typed[k] for k in MEASUREMENT_KEYS if k in typed})
    except SettingsError as exc:
        problems += exc.problems
    return fields


def _tls(typed: Mapping[str, Any], url: str, problems: list[SettingProblem]) -> TlsSettings | None:
    """TLS when any ``ssl*`` option asks for it or the URL is ``https://``; None otherwise."""
    if not (url_scheme(url) == "https" or any(typed.get(key) for key in TLS_KEYS)):
        return None
    try:
        return TlsSettings(
            ca_file=typed.get("ssl_ca"),
            cert_file=typed.get("ssl_cert"),
            key_file=typed.get("ssl_key"),
            insecure=bool(typed.get("ssl_insecure", False)),
        )
    except SettingsError as exc:
        problems += exc.problems
        return None
