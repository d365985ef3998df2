import pytest

from loadgen.config.ranges import parse_levels
from loadgen.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "levels"),
    [
        ("1..256", (1, 2, 4, 8, 16, 32, 64, 128, 256)),
        ("1..8", (1, 2, 4, 8)),
        ("1..100", (1, 2, 4, 8, 16, 32, 64, 100)),
        ("4..32:4", (4, 8, 12, 16, 20, 24, 28, 32)),
        ("1..10:4", (1, 5, 9, 10)),
        ("1..64:x2", (1, 2, 4, 8, 16, 32, 64)),
        ("1..100:x10", (1, 10, 100)),
        ("8,1,4", (1, 4, 8)),
        ("16", (16,)),
        ("1:4", (1, 2, 3, 4)),
        ("2:10:4", (2, 6, 10)),
        (" 1 .. 4 ", (1, 2, 4)),
    ],
)
def test_range_syntax(text: str, levels: tuple[int, ...]) -> None:
    assert parse_levels(text) == levels


@pytest.mark.parametrize(
    "text", ["256..1", "0..4", "abc", "", "1..4:0", "1..4:x1", "1,,2", "0", "-1..4", "4:1", "1..4:y2", "1.5"]
)
def test_malformed_ranges_are_usage_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_levels(text)


def test_huge_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="at most"):
        parse_levels("1..100000:1")
