"""The open-loop pacers: never early, the timer's descriptor released, the choice by name."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import pytest

from loadgen.engine.pacing import SpinPacer, TimerFdPacer, pacer
from loadgen.errors import ConfigError

LINUX = sys.platform.startswith("linux")


@pytest.mark.parametrize("pacing", ["spin", "timerfd"] if LINUX else ["spin"])
def test_a_pacer_never_returns_before_the_deadline(pacing: str) -> None:
    async def run() -> list[int]:
        pace = pacer(pacing, asyncio.get_running_loop())
        early = []
        deadline = time.perf_counter_ns()
        try:
            for gap_us in (0, 5, 50, 500, 3000, 50, 0, 2500):  # both sides of each pacer's thresholds
                deadline += gap_us * 1000
                await pace.until(deadline)
                early.append(deadline - time.perf_counter_ns())
        finally:
            pace.close()
        return early

    assert max(asyncio.run(run())) <= 0


@pytest.mark.skipif(not LINUX, reason="timerfd is Linux's")
def test_auto_picks_the_timer_and_close_releases_its_descriptor() -> None:
    async def run() -> int:
        pace = pacer("auto", asyncio.get_running_loop())
        assert isinstance(pace, TimerFdPacer)
        fd: int = pace._fd
        os.fstat(fd)  # open while the pacer lives
        await pace.until(time.perf_counter_ns() + 2_000_000)
        pace.close()
        pace.close()  # twice is harmless
        return fd

    fd = asyncio.run(run())
    with pytest.raises(OSError):
        os.fstat(fd)


def test_a_timer_that_fires_while_its_waiter_is_cancelled_wakes_nothing() -> None:
    """A step stopped mid-wait: the dispatcher is cancelled; the timer still fires later."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        pace = pacer("auto", loop)
        waiting = loop.create_task(pace.until(time.perf_counter_ns() + 3_000_000))
        await asyncio.sleep(0.001)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        await asyncio.sleep(0.005)  # the timer fires with no one waiting
        await pace.until(time.perf_counter_ns() + 1_000_000)  # and the pacer still works
        pace.close()

    asyncio.run(run())


def test_spin_is_the_portable_choice() -> None:
    async def run() -> None:
        assert isinstance(pacer("spin", asyncio.get_running_loop()), SpinPacer)

    asyncio.run(run())


def test_without_a_timerfd_auto_spins_and_an_explicit_timerfd_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("loadgen.engine.pacing._libc", lambda: None)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(pacer("auto", loop), SpinPacer)
        with pytest.raises(ConfigError, match="--pacing timerfd needs Linux's timerfd; use --pacing spin"):
            pacer("timerfd", loop)

    asyncio.run(run())
