"""Errors a user can cause or fix, and the exit codes they end in: defined once, mapped in ``cli.main``.

Every error here reaches ``main()`` and is printed as one line (``loadgen: error: ...``)
with its class's ``exit_code``. Nothing here imports the rest of loadgen, so any module
may raise these without an import cycle.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILED = 1
"""A sweep failed midway (its finished steps are kept); a plan found a regression or a failed run."""
EXIT_USAGE = 2
"""Bad input or environment: nothing was measured, or what was is kept and the reason printed."""
EXIT_REGRESSION = EXIT_FAILED
"""``compare`` and ``plan run``: a regression fails a pipeline as a failed run does."""
EXIT_MISMATCH = 3
"""``--validate`` found answers that differ from the reference."""
EXIT_ERRORS = 4
"""Requests failed beyond ``--max-error-rate`` in some step (by default: every request of every
step failed). The steps are stored; the numbers describe failures, not a served load."""
EXIT_INTERRUPTED = 130
"""Ctrl-C or SIGTERM: finished steps are kept, the run is marked interrupted."""


class LoadgenError(Exception):
    """A failure the user can act on; ``main()`` prints its message and exits with ``exit_code``."""

    exit_code = EXIT_USAGE


class ConfigError(LoadgenError, ValueError):
    """Invalid settings or arguments: a one-line usage error."""


# -- settings problems: one message, spelled by each front-end ----------------------------------------
# A rule names the options it is about as ``{key}`` (the settings field name). The command
# line shows them as its flags (``--batch-size``), a plan as its keys with the line they are
# on, ``-m name:key=value`` as the key the user typed: the rules are written only once.

_NAME = re.compile(r"\{([a-z][a-z0-9_]*)\}")

Spelling = Callable[[str], str]
"""Turns an option's key into the name the user wrote (a flag, a plan key)."""


def as_key(key: str) -> str:
    return key


@dataclass(frozen=True)
class SettingProblem:
    """One broken rule: ``key`` is the option at fault (where a plan points its line)."""

    key: str
    message: str
    """The sentence, with option names as ``{key}``; see :meth:`render`."""

    def render(self, spell: Spelling = as_key) -> str:
        return _NAME.sub(lambda match: spell(match[1]), self.message)

    def __str__(self) -> str:
        return self.render()


class SettingsError(ConfigError):
    """Settings that break one or more rules; every problem is listed, in the order found."""

    def __init__(self, problems: Iterable[SettingProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__(self.render())

    def render(self, spell: Spelling = as_key) -> str:
        """All problems on one line, options spelled by ``spell``."""
        return "; ".join(problem.render(spell) for problem in self.problems)


def check(*rules: tuple[bool, str, str]) -> list[SettingProblem]:
    """The problems of the rules that do not hold; each rule is ``(holds, key, message)``."""
    return [SettingProblem(key, message) for holds, key, message in rules if not holds]


def raise_problems(problems: Iterable[SettingProblem]) -> None:
    found = list(problems)
    if found:
        raise SettingsError(found)


class ServerUnavailable(LoadgenError, RuntimeError):
    """The server cannot be reached or is not ready."""


class WorkerFailed(LoadgenError, RuntimeError):
    """A worker (a process of ``--workers``, an actor of ``--ray``) died, failed or missed a
    deadline: its step is not stored (never a smaller, silently averaged step), the run fails."""

    exit_code = EXIT_FAILED


class UnknownModel(LoadgenError, LookupError):
    """The model is not on the server (the message lists what is)."""


class EmbeddedServerError(LoadgenError, RuntimeError):
    """Why the embedded server cannot run, in one line."""


class ServerNotInstalled(EmbeddedServerError):
    """nvidia-pytriton (the optional ``server`` extra) is missing or incomplete."""

    INSTALL_HINT = "install the extra: pip install 'loadgen[server]' (nvidia-pytriton)"

    def __init__(self, detail: str = "the embedded Triton server is not installed") -> None:
        super().__init__(f"{detail}: {self.INSTALL_HINT}")


class RunNotFound(LoadgenError, LookupError):
    """No run (or step) with that id in the database."""


class SchemaError(LoadgenError, RuntimeError):
    """The database's schema is not the one this loadgen writes; the message says what to do."""


class StorageError(LoadgenError, RuntimeError):
    """The runs database cannot be opened, read or written (locked, full, read-only, unreachable, not a
    database, no driver): the message names the database, what was lost, and what to do."""
