"""A sweep option's description: key, flags, help, parser and help group (see
:mod:`loadgen.config.options`, which lists them all)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from loadgen.config import values


@dataclass(frozen=True)
class Option:
    """One sweep option (see the module's docstring)."""

    key: str
    flags: tuple[str, ...]
    help: str
    parse: Callable[[object], object] = values.text
    metavar: str | None = None
    repeat: bool = False
    """Given several times on the command line (a list), or as a list or mapping in a plan."""
    switch: bool = False
    """A flag without a value on the command line (true/false elsewhere)."""
    group: str = "sweep"
    path: bool = False
    """A file name: a plan resolves it relative to the plan's folder."""

    @property
    def flag(self) -> str:
        """The long flag, as messages spell the option on the command line."""
        return next((f for f in self.flags if f.startswith("--")), self.flags[0])

    @property
    def names(self) -> tuple[str, ...]:
        """The key and each long flag's name: what plans and ``-m`` accept."""
        spelled = (f.removeprefix("--").replace("-", "_") for f in self.flags if f.startswith("--"))
        return tuple(dict.fromkeys((self.key, *spelled)))


LOAD, MEASURE, INPUTS, SERVER, TLS, CHECKS = "load", "measurement", "inputs", "server", "TLS", "checks"
