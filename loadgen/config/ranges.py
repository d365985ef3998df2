"""Load-level range syntax.

``A..B`` doubles from A up to B (1..256 -> 1, 2, 4, ..., 256), ``A..B:S`` steps by S,
``A..B:xF`` multiplies by F, ``a,b,c`` lists levels, a bare ``N`` is one level, and
perf_analyzer's ``start:end:step`` (or ``start:end``, step 1) is accepted too.
The end is always included, even when the progression skips it (1..100 -> ..., 64, 100).
"""

from __future__ import annotations

import re

from loadgen.errors import ConfigError

_NUM = r"\d+(?:\.\d+)?"
_DOTS = re.compile(rf"^({_NUM})\.\.({_NUM})(?::(x?)({_NUM}))?$")
_COLONS = re.compile(rf"^({_NUM}):({_NUM})(?::({_NUM}))?$")
MAX_LEVELS = 1000
MAX_LEVEL = 1e9
"""No concurrency or rate above this: past it a level is a typo (and 4300 digits would not parse)."""
MIN_RATE = 1e-3
"""Requests/s at least: a schedule's send times are int64 nanoseconds, which slower rates overflow."""


def parse_rates(text: str) -> tuple[float, ...]:
    """Request rates (requests/s) in the same syntax; decimals allowed (``0.5..8``, ``100..1000:100``)."""
    rates = _parse(text, float)
    if rates[0] < MIN_RATE:
        raise ConfigError(f"bad range {text!r}: rates are at least {MIN_RATE:g} requests/s")
    return rates


def parse_levels(text: str) -> tuple[int, ...]:
    """Concurrency levels: whole numbers only."""
    return tuple(int(v) for v in _parse(text, int))


def _parse(text: str, kind: type[int] | type[float]) -> tuple[float, ...]:
    """Parse a range expression into an ascending tuple of distinct positive levels."""
    spec = text.strip().replace(" ", "")
    if not spec:
        raise ConfigError("empty range: give e.g. 1..256, 1..64:x2, 4..32:4, 1,2,8 or 1:16:1")
    if "," in spec:
        parts = spec.split(",")
        if not all(re.fullmatch(_NUM, p) for p in parts):
            raise ConfigError(f"bad level list {text!r}: expected comma-separated positive numbers")
        return _check(text, [_number(text, p, kind) for p in parts], sort=True)
    if re.fullmatch(_NUM, spec):
        return _check(text, [_number(text, spec, kind)])
    if m := _DOTS.match(spec):
        start, end, mult, step = _number(text, m[1], kind), _number(text, m[2], kind), m[3], m[4]
        _bounds(text, start, end)
        if step is None:
            return _check(text, _geometric(start, end, 2))
        if mult:
            factor = float(step)
            if factor < 2:
                raise ConfigError(f"bad range {text!r}: the factor after 'x' must be >= 2")
            return _check(text, _geometric(start, end, factor))
        return _check(text, _linear(text, start, end, _number(text, step, kind)))
    if m := _COLONS.match(spec):
        start, end = _number(text, m[1], kind), _number(text, m[2], kind)
        _bounds(text, start, end)
        return _check(text, _linear(text, start, end, _number(text, m[3] or "1", kind)))
    raise ConfigError(
        f"bad range {text!r}: expected A..B (doubling), A..B:S, A..B:xF, a,b,c or start:end:step"
    )


def _number(text: str, value: str, kind: type[int] | type[float]) -> float:
    if kind is int and "." in value:
        raise ConfigError(f"bad range {text!r}: concurrency levels are whole numbers")
    if float(value) > MAX_LEVEL:
        raise ConfigError(f"bad range {text!r}: numbers in a range are at most {MAX_LEVEL:g}")
    return kind(value)


def _bounds(text: str, start: float, end: float) -> None:
    if start <= 0 or (start < 1 and "." not in text):
        raise ConfigError(f"bad range {text!r}: levels start at 1")
    if end < start:
        raise ConfigError(f"bad range {text!r}: the end ({end}) is below the start ({start})")


def _geometric(start: float, end: float, factor: float) -> list[float]:
    levels = []
    level = start
    while level < end:
        levels.append(level)
        level *= factor
    levels.append(end)
    return levels


def _linear(text: str, start: float, end: float, step: float) -> list[float]:
    if step <= 0 or (step < 1 and "." not in text):
        raise ConfigError(f"bad range {text!r}: the step must be >= 1")
    count = int((end - start) / step + 1e-9)
    if count >= MAX_LEVELS:  # refused before a list of that many levels is made
        raise ConfigError(f"bad range {text!r}: {count + 1} levels, at most {MAX_LEVELS}")
    levels = [round(start + i * step, 9) for i in range(count + 1)]
    if abs(levels[-1] - end) > 1e-9:
        levels.append(end)
    return levels


def _check(text: str, levels: list[float], *, sort: bool = False) -> tuple[float, ...]:
    if any(level <= 0 for level in levels):
        raise ConfigError(f"bad range {text!r}: levels must be > 0")
    unique = sorted(set(levels)) if sort else list(dict.fromkeys(levels))
    if len(unique) > MAX_LEVELS:
        raise ConfigError(f"bad range {text!r}: {len(unique)} levels, at most {MAX_LEVELS}")
    return tuple(unique)
