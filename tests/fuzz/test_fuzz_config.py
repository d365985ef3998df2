"""Every option value a user types, fuzzed: level ranges, each parser of ``config/values.py``, the one
settings constructor, ``-m NAME:key=value`` and ``--request-intervals`` files.

Each either gives a valid value or raises ConfigError (SettingsError is one) whose message is one line.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from loadgen.commands.sweep import parse_model_spec
from loadgen.config import values
from loadgen.config.build import build_settings
from loadgen.config.options import BY_NAME, OPTIONS
from loadgen.config.ranges import MAX_LEVEL, MAX_LEVELS, parse_levels, parse_rates
from loadgen.config.settings import LatencyLimit
from loadgen.engine.schedules import Schedule
from loadgen.errors import ConfigError
from tests.fuzz.promise import refused_in_one_line

_NUMBERS = "0123456789"
range_texts = st.one_of(
    st.text(alphabet=_NUMBERS + ".,:x -+eE\n\t", max_size=24),
    st.builds(
        "{}{}{}{}".format,
        st.integers(0, 10**12).map(str) | st.sampled_from(["0.5", "1.", ".5", "1" * 5000]),
        st.sampled_from(["..", ":", ",", ""]),
        st.integers(0, 10**12).map(str) | st.sampled_from(["", "0.25", "9" * 400]),
        st.sampled_from(["", ":1", ":x2", ":x1.5", ":0", ":0.001", ":3"]),
    ),
    st.text(max_size=12),
)


@given(range_texts, st.booleans())
@example("1" * 5000, False)  # past int()'s 4300 digits: was ValueError
@example("1," + "9" * 400, True)  # a rate of 1e400: was accepted as inf
@example("1:100000000", False)  # was refused only after building 10^8 levels (seconds, gigabytes)
@example("0.0000001", True)  # the schedule's int64 nanoseconds overflowed: garbage send times
def test_level_ranges_give_ascending_positive_levels_or_one_line(text: str, rate: bool) -> None:
    with refused_in_one_line(ConfigError):
        levels = (parse_rates if rate else parse_levels)(text)
        assert 1 <= len(levels) <= MAX_LEVELS
        assert all(0 < level <= MAX_LEVEL for level in levels)
        assert list(levels) == sorted(set(levels))
        if rate:
            for level in (levels[0], levels[-1]):  # the send times of the slowest and fastest step
                assert (next(Schedule(rate=level).gaps_ns()) >= 0).all()
        else:
            assert all(isinstance(level, int) and level >= 1 for level in levels)


@given(
    st.builds(
        "{}:{}:{}".format,
        st.floats(allow_nan=True) | st.sampled_from(["0.0001", "1e-7", "x"]),
        st.floats(allow_nan=True) | st.integers(0, 10**6),
        st.floats(allow_nan=True) | st.integers(0, 10**6),
    )
    | st.text(max_size=12)
)
@example("0.0000001:1:10")  # as slow a start as a rate of 1e-7: was accepted
@example("1.3407807929942597e+154:1.0:1.0")  # its square overflows: NaN send times
def test_a_ramp_gives_a_schedule_or_one_line(text: str) -> None:
    with refused_in_one_line(ConfigError):
        start, end, seconds = values.ramp(text)
        assert (next(Schedule(rate=start, ramp_to=end, ramp_s=seconds).gaps_ns()) >= 0).all()


# -- every parser of config/values.py, with what the three front-ends hand it ----------------------------
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    st.text(alphabet=_NUMBERS + ".,:=xp msu-+eE~/%\n\r\t\0FPB", max_size=25),
    st.sampled_from(
        ["p99=5ms", "50ms", "FP32=1e-3,1e-4", "INPUT:1,2", "a=b", "X-A: b", "10:100:5", "~nobody/x"]
    ),
)
raw_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
PARSERS: dict[str, Callable[[object], object]] = {
    name: function
    for name, function in vars(values).items()
    if callable(function)
    and not name.startswith("_")
    and getattr(function, "__module__", "") == values.__name__
}
"""Every public function of ``values``: a parser added later is fuzzed too."""


def test_the_parsers_under_test_are_the_options_parsers() -> None:
    assert {option.parse for option in OPTIONS} <= set(PARSERS.values())
    assert {"levels", "rates", "shapes", "tolerances", "headers", "labels", "parse_latency_limit"} <= set(
        PARSERS
    )


@given(st.sampled_from(sorted(PARSERS)), raw_values)
@example("path", "~nobody-such-user/x")  # Path.expanduser: was RuntimeError
@example("read_intervals", "a\0b")  # open(): was ValueError (embedded null byte)
@example("headers", {"": "x"})  # an empty header name: was accepted
@example("headers", "X-A: caf\u00e9 \u65e5\u672c")  # not latin-1: the HTTP request could not be built
@example("tolerances", "FP32=inf")  # an infinite tolerance passes every answer: was accepted
def test_every_value_parser_returns_or_refuses_in_one_line(name: str, raw: object) -> None:
    with refused_in_one_line(ConfigError):
        PARSERS[name](raw)


@given(
    st.lists(
        st.tuples(st.text(max_size=8), st.sampled_from([":", ": ", "="]), st.text(max_size=12)).map("".join),
        max_size=3,
    )
)
def test_headers_that_parse_can_be_sent(entries: list[str]) -> None:
    """Over HTTP/1.1 as latin-1 header lines, and as gRPC metadata (printable ASCII)."""
    with refused_in_one_line(ConfigError):
        for name, value in values.headers(entries).items():
            f"{name}: {value}\r\n".encode("ascii")
            assert name and ":" not in name and not any(c.isspace() for c in name)


@given(
    st.one_of(
        st.builds(
            "{}{}{}{}".format,
            st.sampled_from(["", "p", "p99=", "p0=", "p100.5=", "p99.9 = ", "p1" + "0" * 400 + "="]),
            st.sampled_from(["50", "0", "0.2", ".5", "1" * 400, "5."]),
            st.sampled_from(["", "ms", "us", "s", "MS", "h", " ms"]),
            st.sampled_from(["", " ", "x"]),
        ),
        st.text(max_size=15),
    )
)
def test_a_latency_limit_is_a_positive_time_at_a_percentile(text: str) -> None:
    with refused_in_one_line(ConfigError):
        limit = values.parse_latency_limit(text)
        assert isinstance(limit, LatencyLimit)
        assert 0 < limit.percentile <= 100 and 0 < limit.limit_us < math.inf


@given(
    st.dictionaries(st.text(max_size=8), st.lists(st.integers(-2, 2**40) | st.text(max_size=3), max_size=3))
)
def test_shapes_are_sizes_of_at_least_zero(mapping: dict[str, list[int | str]]) -> None:
    with refused_in_one_line(ConfigError):
        for name, shape in values.shapes(mapping).items():
            assert name and all(isinstance(d, int) and d >= 0 for d in shape)


# -- --request-intervals files ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    """One folder for every example (hypothesis runs many per test; tmp_path is one per test)."""
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


_interval_lines = st.one_of(
    st.floats(allow_nan=True).map(repr),
    st.integers(-10, 10**20).map(str),
    st.sampled_from(["", "# a comment", "nan", "inf", "-0", "1e400", "1_000", "0x10", " 5 ", "1" * 5000]),
    st.text(max_size=8),
)


@given(
    st.one_of(st.lists(_interval_lines, max_size=6).map("\n".join).map(str.encode), st.binary(max_size=40))
)
@example(b"nan\n")  # was a NaN rate, refused as "rates must be > 0" under --request-rate
@example(b"1e400\n")  # an infinite gap: a rate of 0
@example(b"\xff\xfe1\n")  # not UTF-8: was UnicodeDecodeError
@example(b"1e15\n")  # 10^15 us: its nanoseconds overflow the schedule's int64
@example(b"2.2e-311\n")  # a gap under a nanosecond: was an infinite rate
def test_request_interval_files_give_finite_gaps_or_one_line(folder: Path, content: bytes) -> None:
    file = folder / "gaps.txt"
    file.write_bytes(content)
    with refused_in_one_line(ConfigError):
        gaps = values.read_intervals(str(file))
        assert gaps and all(0 <= gap <= values.MAX_INTERVAL_US for gap in gaps) and sum(gaps) > 0
        settings = build_settings({"model": "m", "request_intervals": str(file)})
        assert 0 < settings.levels[0] < math.inf


# -- the one constructor and -m --------------------------------------------------------------------------
_option_names = sorted(BY_NAME) + sorted(name.replace("_", "-") for name in BY_NAME)
_layers = st.dictionaries(st.sampled_from(_option_names) | st.text(max_size=6), raw_values, max_size=4)


@given(_layers, _layers)
@example({"input_data": "~nobody-such-user/data.json"}, {})  # was RuntimeError
@example({"ssl_ca": "ca\0.pem"}, {})  # was ValueError from reading the file
@example({}, {"ssl-ca": "0\r0"})  # the message that names the file was two lines
@example({"concurrency": "1" * 5000}, {})  # was ValueError from int()
def test_random_option_values_give_settings_or_one_line(
    first: dict[str, object], second: dict[str, object]
) -> None:
    with refused_in_one_line(ConfigError):
        build_settings(first, second, {"model": "m"})


@pytest.mark.parametrize(
    "option",
    [{"url": "http://["}, {"url": "https://[::1"}, {"url": "[::1"}, {"metrics_url": "http://[/metrics"}],
)
def test_an_address_that_urlsplit_refuses_is_one_line(option: dict[str, str]) -> None:
    with refused_in_one_line(ConfigError):
        build_settings({"model": "m", "protocol": "http", **option})


def test_metrics_families_given_in_two_layers_add_up() -> None:
    settings = build_settings(
        {"metrics_families": ["a", "b"]}, {"metrics_families": ["c", "a"], "model": "m"}
    )
    assert settings.metrics_families == ("a", "b", "c")  # in order, once each


_pieces = st.one_of(
    st.text(max_size=10),
    st.builds(
        "{}={}".format,
        st.sampled_from(_option_names),
        st.text(alphabet=_NUMBERS + ".,:=xp msu-+~/%FPab", max_size=10),
    ),
)
model_specs = st.one_of(
    st.builds(
        "{}{}{}".format,
        st.text(max_size=5),
        st.sampled_from([":", "", "::"]),
        st.lists(_pieces, max_size=4).map(",".join),
    ),
    st.text(max_size=30),
)


@given(model_specs)
@example("b:input_data=~nobody-such-user/d.json")  # was RuntimeError
@example("b:concurrency=1:100000000")  # was seconds and gigabytes before the refusal
def test_model_specs_give_settings_or_one_line(item: str) -> None:
    with refused_in_one_line(ConfigError):
        name, given_values = parse_model_spec(item)
        assert name and ":" not in name
        build_settings(given_values, {"model": name})
