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

from loadgen.config.measurement import STOP_FORMS, StopRule
from loadgen.config.ranges import MAX_LEVEL, MIN_RATE, parse_levels, parse_rates
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
_DURATION = re.compile(r"^(?P<v>-?\d+(?:\.\d*)?(?:e[+-]?\d+)?|\.\d+)\s*(?P<unit>[a-z]*)$", re.I)
_SECONDS_PER = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
DURATION_UNITS = "us, ms, s, m or h"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP field name (RFC 9110 §5.1): what ``-H`` takes as a header's name."""
MAX_INTERVAL_US = 86_400e6
"""A replayed gap longer than a day is no load, and its nanoseconds would overflow the schedule."""


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


def _seconds(raw: object, bare_unit: str) -> float:
    """A duration (``2s``, ``500ms``, ``1.5m``, ``250us``) in seconds; a plain number is in ``bare_unit``."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value, unit = number(raw), bare_unit
    else:
        given = text(raw)
        match = _DURATION.match(given)
        unit = (match["unit"].lower() if match else "") or bare_unit
        if match is None or unit not in _SECONDS_PER:
            raise ConfigError(
                f"must be a duration such as 2s or 500ms (units {DURATION_UNITS}; "
                f"a plain number is {_UNIT_WORDS[bare_unit]}), got {given!r}"
            )
        value = number(match["v"])
    return value * _SECONDS_PER[unit]


_UNIT_WORDS = {"us": "microseconds", "ms": "milliseconds", "s": "seconds"}


def duration_ms(raw: object) -> int:
    """A whole number of milliseconds: ``5000``, ``5s``, ``1.5s``, ``250ms``."""
    ms = _seconds(raw, "ms") * 1e3
    if abs(ms - round(ms)) > 1e-6 * max(1.0, abs(ms)):
        raise ConfigError(f"must be a whole number of milliseconds, got {_scalar(raw)!r} ({ms:g} ms)")
    return round(ms)


def duration_us(raw: object) -> int:
    """A whole number of microseconds (Triton's queue delays): ``100``, ``100us``, ``0.5ms``."""
    us = _seconds(raw, "us") * 1e6
    if us < 0 or abs(us - round(us)) > 1e-6 * max(1.0, us):
        raise ConfigError(f"must be a whole number of microseconds >= 0, got {_scalar(raw)!r}")
    return round(us)


def duration_s(raw: object) -> float:
    """Seconds: ``30``, ``30s``, ``2m``, ``500ms``."""
    return _seconds(raw, "s")


def percent(raw: object) -> float:
    """``5%`` or ``5``."""
    value = raw if isinstance(raw, int | float) and not isinstance(raw, bool) else text(raw).removesuffix("%")
    return number(value)


def fraction(raw: object) -> float:
    """A percentage as a fraction: ``95%`` or ``95`` -> 0.95."""
    return percent(raw) / 100.0


def stop_rules(raw: object) -> tuple[StopRule, ...]:
    """``p99:2%,throughput:1%``: every term must hold (a list in a plan)."""
    items = raw if isinstance(raw, list | tuple) else text(raw).split(",")
    rules = tuple(StopRule.parse(text(item)) for item in items if text(item).strip())
    if not rules:
        raise ConfigError(f"{OPTION} needs at least one of {STOP_FORMS}")
    return rules


def boolean(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    value = text(raw).lower()
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise ConfigError(f"must be true or false, got {value!r}")


def path(raw: object) -> str:
    """A file name (``~`` expanded); whether it exists is the settings' rule."""
    value = text(raw)
    if "\0" in value or value.splitlines() != [value]:  # open() refuses NUL; errors name the file on a line
        raise ConfigError(f"bad file name {value!r}: it holds a NUL character or a line break")
    try:
        return str(Path(value).expanduser())
    except RuntimeError:  # ~name of a user this machine does not know
        raise ConfigError(f"bad file name {value!r}: no such user as {value.split('/')[0]!r}") from None


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


def model_names(raw: object) -> tuple[str, ...]:
    """Model names, comma-separated (or a list in a plan; repeatable), each once, in order."""
    names: list[str] = []
    for item in raw if isinstance(raw, list | tuple) else [raw]:
        for name in (part.strip() for part in text(item).split(",")):
            if not name or any(c.isspace() or c == "/" for c in name):
                expected = "expected model names such as preprocess,resnet"
                raise ConfigError(f"bad {OPTION} {text(item)!r}: {expected}")
            if name not in names:
                names.append(name)
    return tuple(names)


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
    """``FROM:TO:SECONDS``: rates in requests/s and a duration (``30``, ``30s``, ``2m``)."""
    value = text(raw)
    try:
        first, last, duration = value.split(":")
        start, end, seconds = float(first), float(last), duration_s(duration)
    except (ValueError, ConfigError):
        raise ConfigError(f"bad {OPTION} {value!r}: expected FROM:TO:SECONDS, e.g. 100:1000:30s") from None
    if not (all(MIN_RATE <= rate <= MAX_LEVEL for rate in (start, end)) and 0 < seconds < math.inf):
        raise ConfigError(
            f"bad {OPTION} {value!r}: rates must be within {MIN_RATE:g}..{MAX_LEVEL:g} and the duration > 0"
        )
    return start, end, seconds


def read_intervals(raw: object) -> tuple[float, ...]:
    """perf_analyzer's ``--request-intervals`` file: one gap in microseconds per line."""
    name = path(raw)
    try:
        with open(name, encoding="utf-8") as handle:
            lines = [line.strip() for line in handle]
    except OSError as exc:
        raise ConfigError(f"cannot read request intervals {name!r}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not a text file of numbers ({exc.reason})") from None
    values: list[float] = []
    for count, line in enumerate(lines, 1):
        if not line or line.startswith("#"):
            continue
        try:
            value = float(line)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ConfigError(f"{name}:{count}: not a number of microseconds: {line!r}")
        if value > MAX_INTERVAL_US:
            raise ConfigError(f"{name}:{count}: {line!r} is over a day ({MAX_INTERVAL_US:g} microseconds)")
        values.append(value)
    if not values or sum(values) < 1e-3:  # the schedule counts nanoseconds: less is no time at all
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


def _items(raw: object, separator: str, expected: str, secret: bool = False) -> list[tuple[str, object]]:
    """``KEY<sep>VALUE`` texts (one or a list) or a mapping, as (key, value) pairs. ``secret``: a
    malformed entry is not echoed (a header without its colon may be a whole token)."""
    if isinstance(raw, Mapping):
        given = [(str(key).strip(), value) for key, value in raw.items()]
        if not all(key for key, _ in given):
            raise ConfigError(f"bad {OPTION}: a key is empty; expected {expected}")
        return given
    entries = raw if isinstance(raw, list | tuple) else [raw]
    pairs: list[tuple[str, object]] = []
    for entry in entries:
        key, sep, value = text(entry).partition(separator)
        if not sep or not key.strip():
            shown = "(not shown: it may hold a secret)" if secret else repr(text(entry))
            raise ConfigError(f"bad {OPTION} {shown}: expected {expected}")
        pairs.append((key.strip(), value.strip()))
    return pairs


def labels(raw: object) -> dict[str, str]:
    """``KEY=VALUE`` (repeatable) or a mapping."""
    return {key: "" if value is None else str(value) for key, value in _items(raw, "=", "KEY=VALUE")}


MAX_SEQUENCE_ID = 2**64 - 1
"""Triton's correlation ids are uint64; 0 means "no sequence"."""


def id_range(raw: object) -> tuple[int, int]:
    """``START[:END]`` (perf_analyzer's ``--sequence-id-range``): ids START up to END, END
    excluded (default: up to the largest uint64)."""
    value = text(raw)
    first, sep, last = value.partition(":")
    try:
        start = int(first)
        end = int(last) if sep else MAX_SEQUENCE_ID + 1
    except ValueError:
        raise ConfigError(f"bad {OPTION} {value!r}: expected START[:END], whole numbers") from None
    if not 1 <= start < end <= MAX_SEQUENCE_ID + 1:
        raise ConfigError(
            f"bad {OPTION} {value!r}: ids run from START >= 1 (0 is no sequence) up to END > START, "
            f"at most 2^64 (END is excluded)"
        )
    return start, end


RequestParameter = bool | int | str
PARAMETER_TYPES = ("bool", "int", "string")
_RESERVED_PARAMETERS = {
    "sequence_id": "Triton's sequence id, which a sequence run sets per request",
    "sequence_start": "Triton's sequence flag, which a sequence run sets per request",
    "sequence_end": "Triton's sequence flag, which a sequence run sets per request",
    "binary_data_output": "the HTTP binary-data extension's, which loadgen sets",
}
_UNSIGNED_PARAMETERS = {"priority": "1 is the highest level", "timeout": "microseconds"}


def _parameter_value(name: str, given: object, mapped: bool) -> RequestParameter:
    """One parameter's value from ``VALUE:TYPE``; in a plan's mapping (``mapped``) the type may be
    left out: true/false are a bool, a whole number an int, anything else a string."""
    expected = f"bad {OPTION} {name!r}: expected NAME:VALUE:TYPE with TYPE {', '.join(PARAMETER_TYPES)}"
    value, sep, kind = text(given).rpartition(":")
    if mapped and kind not in PARAMETER_TYPES:
        value = text(given)
        whole = re.fullmatch(r"-?\d+", value) is not None
        kind = "bool" if value.lower() in ("true", "false") else "int" if whole else "string"
    elif not sep:
        raise ConfigError(f"{expected}; the type is missing")
    if kind == "string":
        return value
    if kind == "bool" and value.lower() in (*_TRUE, *_FALSE):
        return value.lower() in _TRUE
    if kind == "bool":
        raise ConfigError(f"{expected}; a bool is true or false, got {value!r}")
    if kind != "int":
        raise ConfigError(expected)
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{expected}; {value!r} is no whole number") from None
    if not -(2**63) <= number < 2**63:
        raise ConfigError(f"bad {OPTION} {name!r}: {number} is out of the 64-bit range")
    return number


def request_parameters(raw: object) -> dict[str, RequestParameter]:
    """``NAME:VALUE:TYPE`` (perf_analyzer's form; repeatable) or a plan's mapping of names to
    ``VALUE[:TYPE]``."""
    result: dict[str, RequestParameter] = {}
    expected = f"NAME:VALUE:TYPE with TYPE {', '.join(PARAMETER_TYPES)}"
    for name, given in _items(raw, ":", expected):
        if (why := _RESERVED_PARAMETERS.get(name)) is not None or name.startswith("triton_"):
            raise ConfigError(f"bad {OPTION} {name!r}: the name is reserved ({why or 'by Triton'})")
        value = _parameter_value(name, given, isinstance(raw, Mapping))
        unit = _UNSIGNED_PARAMETERS.get(name)
        if unit is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigError(
                f"bad {OPTION} {name!r}: Triton's {name} is an int >= 0 ({unit}), got {value!r}"
            )
        result[name] = value
    return result


def headers(raw: object) -> dict[str, str]:
    """``Name: value`` (repeatable) or a mapping: a field name, and a value of printable ASCII (what both
    HTTP and gRPC metadata carry; a request could not be built with more)."""
    result = {}
    for name, value in _items(raw, ":", "'Name: value'", secret=True):
        shown = "" if value is None else str(value)
        if not _TOKEN.fullmatch(name) or not all(" " <= c <= "~" for c in shown):  # the value is a secret
            raise ConfigError(
                f"bad {OPTION} {name!r}...: expected 'Name: value' on one line, the name letters, digits "
                "and -_.!#$%&'*+^`|~, the value printable ASCII"
            )
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
        if (
            dtype not in FLOAT_DATATYPES
            or len(numbers) not in (1, 2)
            or not all(0 <= n < math.inf for n in numbers)
        ):
            raise ConfigError(
                f"bad {OPTION} {f'{name}={values}'!r}: expected DTYPE=RTOL or DTYPE=RTOL,ATOL with DTYPE one "
                f"of {', '.join(FLOAT_DATATYPES)} (other types compare exactly)"
            )
        result[dtype] = (numbers[0], numbers[-1])
    return result
