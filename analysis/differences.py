"""What two runs did differently that changes what is measured: the settings, and the server's
model config as gRPC and HTTP agree on it. ``compare`` warns with these before its verdicts."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadgen.storage import RunRecord

SHOWN_CHARS = 80
"""A setting's value is cut to this many characters in a warning (kept whole in the difference)."""


def _shown(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


@dataclass(frozen=True)
class SettingDifference:
    """A setting that changes what is measured, different in the two runs (values as shown)."""

    setting: str
    """``batch size``, ``protocol``, ``model config instance_group``..."""
    base: str
    new: str

    def message(self, base_id: int, new_id: int) -> str:
        return (
            f"the runs differ in {self.setting}: {_shown(self.base)} (run {base_id}) vs "
            f"{_shown(self.new)} (run {new_id}): the comparison may not be like for like"
        )


_MISSING: Any = object()
"""A setting the run did not store (an older loadgen): never reported as a difference."""

Getter = Callable[[RunRecord], Any]


@dataclass(frozen=True)
class _Setting:
    name: str
    get: Getter
    show: Callable[[Any], str] = str
    applies: Callable[[RunRecord, RunRecord], bool] = lambda base, new: True


def _key(*path: str) -> Getter:
    """``run.settings[path[0]][path[1]]...``, or :data:`_MISSING`; later names are older spellings
    of the last key (``max_windows`` was ``max_trials``)."""

    def get(run: RunRecord) -> Any:
        value: Any = run.settings
        for key in path[:-1]:
            if not isinstance(value, dict) or key not in value:
                return _MISSING
            value = value[key]
        return value.get(path[-1], _MISSING) if isinstance(value, dict) else _MISSING

    return get


def _measurement(key: str, *older: str) -> Getter:
    new, old = _key("measurement", key), [_key("measurement", k) for k in older]

    def get(run: RunRecord) -> Any:
        value = new(run)
        for getter in old:
            value = getter(run) if value is _MISSING else value
        return value

    return get


def _on_off(value: Any) -> str:
    return "on" if value else "off"


def _shapes(value: Any) -> str:
    if not value:
        return "the model's own"
    return "; ".join(f"{name} {','.join(str(d) for d in dims)}" for name, dims in sorted(value.items()))


def _send_plan(value: Any) -> str:
    if not value:
        return "none"
    return f"{len(value)} intervals averaging {sum(value) / len(value):.0f} us"


def _tls(run: RunRecord) -> Any:
    """On or off: which certificate files were used changes nothing measured."""
    return _MISSING if "tls" not in run.settings else run.settings["tls"] is not None


def _ramp(run: RunRecord) -> Any:
    start, seconds = _key("ramp_from")(run), _key("ramp_s")(run)
    return _MISSING if _MISSING in (start, seconds) else (start, seconds)


def _show_ramp(value: tuple[float | None, float]) -> str:
    start, seconds = value
    return "none" if start is None else f"from {start:g}/s over {seconds:g} s"


def _grpc(base: RunRecord, new: RunRecord) -> bool:
    return all(run.settings.get("protocol") == "grpc" for run in (base, new))


def _open_loop(base: RunRecord, new: RunRecord) -> bool:
    return base.scenario == new.scenario == "request_rate"


def _seeded(base: RunRecord, new: RunRecord) -> bool:
    """The seed makes the random inputs and a Poisson schedule: the same data otherwise."""
    random = all(run.settings.get("input_data") == "random" for run in (base, new))
    poisson = _open_loop(base, new) and "poisson" in {run.settings.get("distribution") for run in (base, new)}
    return random or poisson


SETTINGS: tuple[_Setting, ...] = (
    _Setting("protocol", _key("protocol")),
    _Setting("gRPC client", _key("grpc_client"), applies=_grpc),
    _Setting("TLS", _tls, _on_off),
    _Setting("model version", lambda run: run.model_version, lambda v: v or "the server's choice"),
    _Setting("batch size", _key("batch_size")),
    _Setting("input data", _key("input_data")),
    _Setting("input shapes", _key("shapes"), _shapes),
    _Setting("seed", _key("seed"), applies=_seeded),
    _Setting("measurement interval", _measurement("measurement_interval_ms"), lambda v: f"{v:g} ms"),
    _Setting("warm-up", _measurement("warmup_ms"), lambda v: f"{v:g} ms"),
    _Setting("stability percentage", _measurement("stability_percentage"), lambda v: f"{v:g}%"),
    _Setting("max windows per step", _measurement("max_windows", "max_trials")),
    _Setting("send distribution", _key("distribution"), applies=_open_loop),
    _Setting("max in flight", _key("max_in_flight"), applies=_open_loop),
    _Setting("replayed send plan", _key("request_intervals_us"), _send_plan, applies=_open_loop),
    _Setting("ramp", _ramp, _show_ramp, applies=_open_loop),
    _Setting("workers", _key("workers"), lambda v: "auto" if v is None else str(v)),
    _Setting("request timeout", _key("request_timeout_s"), lambda v: f"{v:g} s" if v else "none"),
    _Setting("answer validation (--validate)", _key("validate"), _on_off),
    _Setting("Triton version", lambda run: run.server_metadata.get("version", _MISSING)),
)
"""What changes a measurement. Left out: the scenario (runs of different scenarios are not
compared), the levels (matched), labels, the database, header values (never stored), the
server and metrics addresses (an embedded server's ports change from run to run: the
server's version and model config say what it was), metric scraping, tolerances, limits."""

ENUM_DEFAULTS = frozenset({"FORMAT_NONE", "PRIORITY_DEFAULT", "REJECT", "KIND_AUTO"})
"""Zero values of the model config's enums: gRPC leaves them out, HTTP writes them."""
_CONFIG_SHOWN = ("max_batch_size", "dynamic_batching", "instance_group")
_CONFIG_IGNORED = frozenset({"name", "version_policy", *_CONFIG_SHOWN})
"""The name is the model's (compared apart), the version policy what the model version says."""


def _plain(value: Any) -> Any:
    """A model config value as gRPC and HTTP agree on it: HTTP writes defaults (0, "", false,
    empty lists and maps, enum zero values) that gRPC leaves out, gRPC writes 64-bit integers
    as strings."""
    if isinstance(value, dict):
        items = {key: _plain(v) for key, v in value.items()}
        return {key: v for key, v in items.items() if not _default(v)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return value


def _default(value: Any) -> bool:
    return value is None or value in (0, "", [], {}) or (isinstance(value, str) and value in ENUM_DEFAULTS)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _dynamic_batching(config: dict[str, Any]) -> str:
    if "dynamic_batching" not in config:  # a set but empty section is on: test its presence
        return "off"
    fields = _plain(config["dynamic_batching"]) or {}
    return "on" + (f" ({', '.join(f'{k}={_json(v)}' for k, v in sorted(fields.items()))})" if fields else "")


def _instances(config: dict[str, Any]) -> str:
    groups = _plain(config.get("instance_group")) or []
    shown = []
    for group in groups:
        kind = str(group.get("kind", "KIND_AUTO")).removeprefix("KIND_")
        gpus = group.get("gpus")
        on = f" on GPU {','.join(str(g) for g in gpus)}" if gpus else ""
        shown.append(f"{group.get('count', 1)} x {kind}{on}")
    return " + ".join(shown) or "the server's default"


def _config_differences(base: dict[str, Any], new: dict[str, Any]) -> list[SettingDifference]:
    """The server's model config, where both runs stored it: the batching, the instances, then
    any other field, compared as gRPC and HTTP agree on it."""
    if not base or not new:
        return []
    plain_base, plain_new = _plain(base), _plain(new)
    shown = [
        ("max_batch_size", str(plain_base.get("max_batch_size", 0)), str(plain_new.get("max_batch_size", 0))),
        ("dynamic_batching", _dynamic_batching(base), _dynamic_batching(new)),
        ("instance_group", _instances(base), _instances(new)),
    ]
    for key in sorted((plain_base.keys() | plain_new.keys()) - _CONFIG_IGNORED):
        values = (plain_base.get(key, _MISSING), plain_new.get(key, _MISSING))
        if values[0] != values[1]:
            shown.append((key, *("unset" if v is _MISSING else _json(v) for v in values)))
    return [SettingDifference(f"model config {key}", b, n) for key, b, n in shown if b != n]


def setting_differences(base: RunRecord, new: RunRecord) -> tuple[SettingDifference, ...]:
    """Every setting that changes what is measured and differs between the runs (one either run
    did not store is not known to differ)."""
    found = []
    for setting in SETTINGS:
        if not setting.applies(base, new):
            continue
        values = setting.get(base), setting.get(new)
        if _MISSING in values or values[0] == values[1]:
            continue
        found.append(SettingDifference(setting.name, setting.show(values[0]), setting.show(values[1])))
    return (*found, *_config_differences(base.model_config, new.model_config))
