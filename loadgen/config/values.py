"""User input -> typed values: one parser per kind of option value, shared by every front-end.

A value arrives as the command line gives it (text, a list of texts for a repeated
option, True for a flag), as ``-m name:key=value`` gives it (text), or as a plan
gives it (text as written in the YAML, a list, a mapping). Each parser takes all of
these and raises :class:`ConfigError` with what it expected; where the message names the
option it says :data:`OPTION`, which the constructor replaces with the option's name as
the user spelled it (a flag, a plan key), and otherwise puts that name in front.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from loadgen.config.ranges import parse_levels, parse_rates
from loadgen.config.settings import INPUT_KEYWORDS, LatencyLimit
from loadgen.errors import ConfigError

FLOAT_DATATYPES = ("BF16", "FP16", "FP32", "FP64")
"""Datatypes compared within a tolerance by ``--validate`` (others compare exactly)."""
METRICS_OFF = ("", "off", "none", "no", "false")
"""``metrics_url`` values that turn scraping off (as ``--no-metrics`` does)."""
OPTION = "{option}"
"""Where a parser's message names the option (see the module docstring)."""
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_LIMIT = re.compile(
    r"^(?:p(?P<p>\d+(?:\.\d+)?)\s*=\s*)?(?P<v>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>us|ms|s)?$", re.I
)
_UNIT_US = {"us": 1.0, "ms": 1e3, "s": 1e6}


def _kind(raw: object) -> str:
    return "a list" if isinstance(raw, list | tuple) else "a mapping"


def _scalar(raw: object) -> str:
    if isinstance(raw, list | tuple | dict):
        raise ConfigError(f"must be a single value, not {_kind(raw)}")
    return "" if raw is None else str(raw).strip()


def text(raw: object) -> str:
    """One value, as text (numbers as written)."""
    value = _scalar(raw)
    if value == "":
        raise ConfigError("is empty")
    return value


def whole(raw: object) -> int:
    if isinstance(raw, bool):
        raise ConfigError(f"must be a whole number, got {raw!r}")
    if isinstance(raw, int):
        return raw
    value = text(raw)
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"must be a whole number, got {value!r}") from None


def number(raw: object) -> float:
    if isinstance(raw, bool):
        raise ConfigError(f"must be a number, got {raw!r}")
    value = raw if isinstance(raw, int | float) else text(raw)
    try:
        result = float(value)
    except ValueError:
        result = math.nan
    if not math.isfinite(result):
        raise ConfigError(f"must be a number, got {value!r}")
    return result


def boolean(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    value = text(raw).lower()
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise ConfigError(f"must be true or false, got {value!r}")


def path(raw: object) -> str:
    """A file name (``~`` expanded); whether it exists is the settings' rule."""
    return str(Path(text(raw)).expanduser())


def input_data(raw: object) -> str:
    value = text(raw)
    return value if value in INPUT_KEYWORDS else path(value)


def patterns(raw: object) -> tuple[str, ...]:
    """Regular expressions (repeatable, or a list in a plan); each must compile."""
    result = []
    for item in raw if isinstance(raw, list | tuple) else [raw]:
        value = text(item)
        try:
            re.compile(value)
        except re.error as exc:
            raise ConfigError(f"bad {OPTION} {value!r}: not a regular expression ({exc})") from None
        result.append(value)
    return tuple(result)


def metrics_url(raw: object) -> str:
    """A URL, or ``off`` (empty string: no scraping)."""
    if isinstance(raw, bool) and not raw:  # YAML's `metrics_url: off` read as a value
        return ""
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in METRICS_OFF):
        return ""
    return text(raw)


def levels(raw: object) -> tuple[int, ...]:
    return parse_levels(_scalar(raw))  # an empty range says what a range looks like


def rates(raw: object) -> tuple[float, ...]:
    return parse_rates(_scalar(raw))


def ramp(raw: object) -> tuple[float, float, float]:
    """``FROM:TO:SECONDS``: rates in requests/s and a duration."""
    value = text(raw)
    try:
        start, end, seconds = (float(part) for part in value.split(":"))
    except ValueError:
        raise ConfigError(f"bad {OPTION} {value!r}: expected FROM:TO:SECONDS, e.g. 100:1000:30") from None
    if not (start > 0 and end > 0 and seconds > 0) or not math.isfinite(start + end + seconds):
        raise ConfigError(f"bad {OPTION} {value!r}: rates and duration must be > 0")
    return start, end, seconds


def read_intervals(raw: object) -> tuple[float, ...]:
    """perf_analyzer's ``--request-intervals`` file: one gap in microseconds per line."""
    name = path(raw)
    try:
        with open(name) as handle:
            lines = [line.strip() for line in handle]
    except OSError as exc:
        raise ConfigError(f"cannot read request intervals {name!r}: {exc.strerror}") from exc
    values: list[float] = []
    for count, line in enumerate(lines, 1):
        if not line or line.startswith("#"):
            continue
        try:
            values.append(float(line))
        except ValueError:
            raise ConfigError(f"{name}:{count}: not a number of microseconds: {line!r}") from None
    if not values or sum(values) <= 0:
        raise ConfigError(f"{name}: no positive intervals")
    if any(v < 0 for v in values):
        raise ConfigError(f"{name}: intervals must be >= 0 microseconds")
    return tuple(values)


def parse_latency_limit(raw: object, what: str = OPTION) -> LatencyLimit:
    """``p99=50ms``, ``p95=0.2s``, ``p99.9=800us`` or ``50ms`` (meaning p99); a bare number is ms."""
    value = text(raw)
    match = _LIMIT.match(value)
    if match is None:
        raise ConfigError(f"bad {what} {value!r}: expected like p99=50ms, p95=0.2s or 50ms")
    unit = (match["unit"] or "ms").lower()
    return LatencyLimit(float(match["p"] or 99), float(match["v"]) * _UNIT_US[unit])


def _items(raw: object, separator: str, expected: str) -> list[tuple[str, object]]:
    """``KEY<sep>VALUE`` texts (one or a list) or a mapping, as (key, value) pairs."""
    if isinstance(raw, Mapping):
        return [(str(key), value) for key, value in raw.items()]
    entries = raw if isinstance(raw, list | tuple) else [raw]
    pairs: list[tuple[str, object]] = []
    for entry in entries:
        key, sep, value = text(entry).partition(separator)
        if not sep or not key.strip():
            raise ConfigError(f"bad {OPTION} {text(entry)!r}: expected {expected}")
        pairs.append((key.strip(), value.strip()))
    return pairs


def labels(raw: object) -> dict[str, str]:
    """``KEY=VALUE`` (repeatable) or a mapping."""
    return {key: "" if value is None else str(value) for key, value in _items(raw, "=", "KEY=VALUE")}


def headers(raw: object) -> dict[str, str]:
    """``Name: value`` (repeatable) or a mapping; names and values on one line each."""
    result = {}
    for name, value in _items(raw, ":", "'Name: value'"):
        shown = "" if value is None else str(value)
        if any(c in name for c in " \r\n") or any(c in shown for c in "\r\n"):
            raise ConfigError(f"bad {OPTION} {name!r}...: expected 'Name: value' on one line")
        result[name] = shown
    return result


def shapes(raw: object) -> dict[str, tuple[int, ...]]:
    """``NAME:d1,d2`` (repeatable) or a mapping of names to sizes (a list, or ``d1,d2``)."""
    result = {}
    for name, dims in _items(raw, ":", "NAME:d1,d2,... with sizes >= 0"):
        items = dims if isinstance(dims, list | tuple) else str(dims).split(",")
        try:
            shape = tuple(int(str(d).strip()) for d in items)
        except ValueError:
            shape = ()
        if not shape or any(d < 0 for d in shape):
            shown = ",".join(map(str, items)) if isinstance(dims, list | tuple) else dims
            raise ConfigError(f"bad {OPTION} {f'{name}:{shown}'!r}: expected NAME:d1,d2,... with sizes >= 0")
        result[name] = shape
    return result


def tolerances(raw: object) -> dict[str, tuple[float, float]]:
    """``DTYPE=RTOL`` (rtol = atol) or ``DTYPE=RTOL,ATOL`` (repeatable) or a mapping."""
    result: dict[str, tuple[float, float]] = {}
    for name, values in _items(raw, "=", "DTYPE=RTOL or DTYPE=RTOL,ATOL"):
        dtype = name.upper()
        items: Sequence[object] = values if isinstance(values, list | tuple) else str(values).split(",")
        try:
            numbers = [float(str(v)) for v in items]
        except ValueError:
            numbers = []
        if dtype not in FLOAT_DATATYPES or len(numbers) not in (1, 2) or not all(n >= 0 for n in numbers):
            raise ConfigError(
                f"bad {OPTION} {f'{name}={values}'!r}: expected DTYPE=RTOL or DTYPE=RTOL,ATOL with DTYPE one "
                f"of {', '.join(FLOAT_DATATYPES)} (other types compare exactly)"
            )
        result[dtype] = (numbers[0], numbers[-1])
    return result
