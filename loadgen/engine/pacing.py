"""Waking the open-loop sender at a send's intended time, to tens of microseconds.

asyncio's timers cannot do it: the selector rounds its timeout up to whole milliseconds, so a
sleep ends up to a millisecond late. Two ways around that, chosen by ``--pacing``:

- ``timerfd`` (Linux; ``auto`` picks it where it exists): a kernel timer file descriptor
  armed for the absolute intended time on the monotonic clock that ``time.perf_counter_ns``
  reads, watched by the event loop like a socket. The loop sleeps in the kernel until a
  response or the timer arrives, so waiting costs no CPU, and the wake-up is as late as the
  kernel's scheduling (tens of us), not a millisecond.
- ``spin`` (anywhere): sleep with asyncio until shortly before the time, then yield to the loop in
  a tight loop until it has come: precise as long as the loop turns quickly, but it burns a core
  whenever sends are less than a couple of milliseconds apart.

Sends already due when the sender looks (it fell behind, or several are due together) go at once,
one after the other, without waiting.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import time
from typing import Protocol

from loadgen.errors import ConfigError

CLOCK_MONOTONIC = 1  # what time.perf_counter_ns reads on Linux
TFD_NONBLOCK = os.O_NONBLOCK
TFD_CLOEXEC = os.O_CLOEXEC
TFD_TIMER_ABSTIME = 1
SPIN_NS = 20_000
"""Closer than this to the intended time, yield-spin instead of arming the timer: a wake-up
takes about as long."""
EARLY_NS = 200_000
"""How early the timer is first armed before a send's time (then it learns; see TimerFdPacer)."""
EARLY_MIN_NS, EARLY_MAX_NS = 20_000, 500_000
EARLY_STEP_NS = 5_000
"""A wake-up later than the margin raises it this much; one in time lowers it 1/99 of this, so it
settles where 1% of wake-ups come later than it (a streaming estimate of their p99)."""
COARSE_SLEEP_NS = 2_000_000  # spin pacing: sleep while the next send is further away than this
WAKE_EARLY_S = 0.0015  # spin pacing: asyncio timers fire late by up to ~1 ms: wake this early


class Pacer(Protocol):
    async def until(self, deadline_ns: int) -> None:
        """Return once ``time.perf_counter_ns()`` has reached ``deadline_ns``."""

    def close(self) -> None: ...


class SpinPacer:
    """asyncio sleep, then yield to the loop until the time has come."""

    async def until(self, deadline_ns: int) -> None:
        clock = time.perf_counter_ns
        wait = deadline_ns - clock()
        if wait > COARSE_SLEEP_NS:
            await asyncio.sleep(wait / 1e9 - WAKE_EARLY_S)
        while clock() < deadline_ns:
            await asyncio.sleep(0)

    def close(self) -> None:
        pass


class _TimeSpec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("it_interval", _TimeSpec), ("it_value", _TimeSpec)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        return libc
    except (OSError, AttributeError):
        return None


class TimerFdPacer:
    """A timerfd the event loop watches; :meth:`until` arms it a margin before the deadline,
    awaits its expiry, then yield-spins the rest of the way.

    The margin is learned: it tracks the 99th percentile of how late the kernel wakes the loop
    (:data:`EARLY_STEP_NS`), so an outlier (the hypervisor took the CPU) does not make every later
    wait spin. An idle virtual CPU can take 100-200 us to wake (measured here: p50 80 us, p99
    150-200 us), bare metal a few: the pacer spins about as long as the machine needs, and
    sleeps the rest of every gap.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, libc: ctypes.CDLL) -> None:
        fd = libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self._fd, self._loop, self._settime = fd, loop, libc.timerfd_settime
        self._spec = _ITimerSpec()  # reused: arming allocates nothing
        self._spec_ref = ctypes.byref(self._spec)
        self._waiter: asyncio.Future[None] | None = None
        self.early_ns = EARLY_NS
        try:
            loop.add_reader(fd, self._expired)
        except BaseException:
            os.close(fd)
            raise

    def _expired(self) -> None:
        try:
            os.read(self._fd, 8)
        except BlockingIOError:  # re-armed after it fired: nothing to read yet
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def until(self, deadline_ns: int) -> None:
        clock = time.perf_counter_ns
        wake = deadline_ns - self.early_ns
        if wake - clock() > SPIN_NS:
            value = self._spec.it_value
            value.tv_sec, value.tv_nsec = divmod(wake, 1_000_000_000)
            if self._settime(self._fd, TFD_TIMER_ABSTIME, self._spec_ref, None) != 0:
                raise OSError(ctypes.get_errno(), "timerfd_settime failed")
            self._waiter = waiter = self._loop.create_future()
            await waiter
            if clock() - wake > self.early_ns - SPIN_NS:
                self.early_ns = min(EARLY_MAX_NS, self.early_ns + EARLY_STEP_NS)
            else:
                self.early_ns = max(EARLY_MIN_NS, self.early_ns - EARLY_STEP_NS // 99)
        while clock() < deadline_ns:
            await asyncio.sleep(0)

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1


def pacer(pacing: str, loop: asyncio.AbstractEventLoop) -> Pacer:
    """The pacer ``pacing`` names (``auto``: timerfd where this host has it, else spin); an
    explicit ``timerfd`` where there is none is a clear error."""
    if pacing == "spin":
        return SpinPacer()
    libc = _libc()
    if libc is None and pacing == "auto":
        return SpinPacer()
    if libc is None:
        raise ConfigError("--pacing timerfd needs Linux's timerfd; use --pacing spin")
    try:
        return TimerFdPacer(loop, libc)
    except OSError:
        if pacing == "auto":  # no descriptor to spare for the timer: pace the portable way
            return SpinPacer()
        raise
