"""Load-level range syntax.

``A..B`` doubles from A up to B (1..256 -> 1, 2, 4, ..., 256), ``A..B:S`` steps by S,
``A..B:xF`` multiplies by F, ``a,b,c`` lists levels, a bare ``N`` is one level, and
perf_analyzer's ``start:end:step`` (or ``start:end``, step 1) is accepted too.
The end is always included, even when the progression skips it (1..100 -> ..., 64, 100).
"""

from __future__ import annotations

import re

from loadgen.config import ConfigError

_INT = r"\d+"
_DOTS = re.compile(rf"^({_INT})\.\.({_INT})(?::(x?)({_INT}))?$")
_COLONS = re.compile(rf"^({_INT}):({_INT})(?::({_INT}))?$")
MAX_LEVELS = 1000


def parse_levels(text: str) -> tuple[int, ...]:
    """Parse a range expression into an ascending tuple of distinct positive levels."""
    spec = text.strip().replace(" ", "")
    if not spec:
        raise ConfigError("empty range: give e.g. 1..256, 1..64:x2, 4..32:4, 1,2,8 or 1:16:1")
    if "," in spec:
        parts = spec.split(",")
        if not all(p.isdigit() for p in parts):
            raise ConfigError(f"bad level list {text!r}: expected comma-separated positive integers")
        return _check(text, [int(p) for p in parts], sort=True)
    if spec.isdigit():
        return _check(text, [int(spec)])
    if m := _DOTS.match(spec):
        start, end, mult, step = int(m[1]), int(m[2]), m[3], m[4]
        _bounds(text, start, end)
        if step is None:
            return _check(text, _geometric(start, end, 2))
        if mult:
            if int(step) < 2:
                raise ConfigError(f"bad range {text!r}: the factor after 'x' must be >= 2")
            return _check(text, _geometric(start, end, int(step)))
        return _check(text, _linear(text, start, end, int(step)))
    if m := _COLONS.match(spec):
        start, end = int(m[1]), int(m[2])
        _bounds(text, start, end)
        return _check(text, _linear(text, start, end, int(m[3] or 1)))
    raise ConfigError(
        f"bad range {text!r}: expected A..B (doubling), A..B:S, A..B:xF, a,b,c or start:end:step"
    )


def _bounds(text: str, start: int, end: int) -> None:
    if start < 1:
        raise ConfigError(f"bad range {text!r}: levels start at 1")
    if end < start:
        raise ConfigError(f"bad range {text!r}: the end ({end}) is below the start ({start})")


def _geometric(start: int, end: int, factor: int) -> list[int]:
    levels = []
    level = start
    while level < end:
        levels.append(level)
        level *= factor
    levels.append(end)
    return levels


def _linear(text: str, start: int, end: int, step: int) -> list[int]:
    if step < 1:
        raise ConfigError(f"bad range {text!r}: the step must be >= 1")
    levels = list(range(start, end + 1, step))
    if levels[-1] != end:
        levels.append(end)
    return levels


def _check(text: str, levels: list[int], *, sort: bool = False) -> tuple[int, ...]:
    if any(level < 1 for level in levels):
        raise ConfigError(f"bad range {text!r}: levels must be >= 1")
    unique = sorted(set(levels)) if sort else list(dict.fromkeys(levels))
    if len(unique) > MAX_LEVELS:
        raise ConfigError(f"bad range {text!r}: {len(unique)} levels, at most {MAX_LEVELS}")
    return tuple(unique)
