"""The promise every fuzz test checks: a parser returns a value, or raises its documented error
with a message on one line (what ``loadgen: error: ...`` prints); anything else is a bug."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from hypothesis import settings


def assert_one_line(message: str) -> None:
    assert message.strip() and message.splitlines() == [message], f"not one line: {message!r}"


@contextlib.contextmanager
def refused_in_one_line(*errors: type[BaseException]) -> Iterator[None]:
    """The block returns, or raises one of ``errors`` with a one-line message; any other
    exception propagates and fails the test."""
    try:
        yield
    except errors as exc:
        assert_one_line(str(exc))


def fewer(divisor: int) -> settings:
    """The profile's settings with ``1/divisor`` of its examples: for tests that open sockets."""
    return settings(max_examples=max(10, settings().max_examples // divisor))
