"""Fixtures the unit tests share: a fresh SQLite runs database per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadgen.storage import RunStore


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


@pytest.fixture
def store(url: str) -> Iterator[RunStore]:
    with RunStore(url) as s:
        yield s
