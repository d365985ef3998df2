"""``loadgen sweep --help`` as a new user reads it: grouped, every default said, examples at the end."""

from __future__ import annotations

import argparse
import re

import pytest

from loadgen.cli import build_parser, main

NO_DEFAULT = {
    "--model": "required",
    "--ssl-key": "goes with --ssl-cert",
    "--request-intervals": "a file the user brings, or closed loop",
    "--ramp": "a shape the user gives, or closed loop",
    "--csv": "an extra file only when asked",
    "--report": "an extra file only when asked",
}
"""Value options with nothing to default to, and why."""


def _sweep() -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sweep: argparse.ArgumentParser = sub.choices["sweep"]
    return sweep


def test_sweep_help_is_grouped_says_every_default_and_ends_with_examples() -> None:
    sweep = _sweep()
    titles = [g.title or "" for g in sweep._action_groups]
    for section in ("server", "load", "measurement", "inputs", "checking", "TLS", "output"):
        assert any(t.startswith(section) for t in titles), (section, titles)
    silent = []
    for action in sweep._actions:
        flag = next((f for f in action.option_strings if f.startswith("--")), None)
        if flag is None or action.nargs == 0 or flag in NO_DEFAULT or flag == "--help":
            continue
        if not re.search(r"default", action.help or ""):
            silent.append(flag)
    assert silent == [], "say each option's default in its help"
    text = sweep.format_help()
    assert text.splitlines()[0].startswith("usage: loadgen sweep -m MODEL")
    examples = text[text.index("examples:") :]
    assert examples.count("loadgen sweep ") >= 5 and "exit codes:" in examples
    assert text.index("examples:") > text.index("output:"), "examples end the help"


def test_forgetting_the_model_is_one_line_pointing_to_help(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse printed a 19-line usage block."""
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--concurrency", "1..8"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.splitlines() == [
        "loadgen: error: the following arguments are required: -m/--model (see `loadgen sweep --help`)"
    ]
