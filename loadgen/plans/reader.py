"""A plan's YAML as a node tree, so every problem points at its line.

The YAML is read with ``yaml.compose`` (never ``load``): nodes keep their lines, and
scalars are kept as written, since YAML 1.1 would turn ``1:16:1`` into a base-60
integer and ``1.10`` into 1.1. Problems are collected, never raised one by one: a
nightly job should fail on the commit that broke its plan, with every problem listed.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loadgen.errors import ConfigError

Items = dict[str, tuple[yaml.Node, yaml.Node]]
"""A mapping's keys -> (key node, value node)."""
NULL_TAG = "tag:yaml.org,2002:null"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a plan, at a line of its file."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class PlanError(ConfigError):
    """The plan is invalid; ``problems`` lists every problem found, in file order, each once."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(sorted(dict.fromkeys(problems), key=lambda p: p.line))
        super().__init__("\n".join(str(p) for p in self.problems))


def line_of(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def shown(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return repr(node.value)
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


def raw(node: yaml.Node) -> Any:
    """A value as written: text for a scalar ("" when empty), lists and mappings of those."""
    if isinstance(node, yaml.SequenceNode):
        return [raw(item) for item in node.value]
    if isinstance(node, yaml.MappingNode):
        return {str(key.value): raw(value) for key, value in node.value}
    return "" if node.tag == NULL_TAG else str(node.value)


@dataclass
class Reader:
    """Collects problems while a plan is read; ``base_dir`` anchors its relative file names."""

    path: str
    base_dir: Path
    problems: list[Problem] = field(default_factory=list)
    _construct: yaml.constructor.SafeConstructor = field(default_factory=yaml.constructor.SafeConstructor)

    def add(self, node: yaml.Node | int, message: str) -> None:
        """A problem, told once (a matrix job reads the job's own values for each combination)."""
        problem = Problem(self.path, node if isinstance(node, int) else line_of(node), message)
        if problem not in self.problems:
            self.problems.append(problem)

    def value(self, node: yaml.Node) -> Any:
        try:
            return self._construct.construct_object(node, deep=True)
        except yaml.YAMLError:  # a tag the safe loader refuses (!!python/...): not a value we take
            return None
        except ValueError:  # an integer of over 4300 digits, a timestamp such as 2024-13-45
            return None

    def text(self, node: yaml.Node, what: str) -> str | None:
        """A scalar as written in the file (never YAML 1.1's ints from ``1:16``)."""
        if not isinstance(node, yaml.ScalarNode):
            self.add(node, f"{what} must be a single value, not {shown(node)}")
        elif node.tag == NULL_TAG or node.value == "":
            self.add(node, f"{what} is empty")
        else:
            return str(node.value)
        return None

    def mapping(self, node: yaml.Node, what: str) -> Items | None:
        """Key -> (key node, value node); problems for a non-mapping, odd or repeated keys."""
        if not isinstance(node, yaml.MappingNode):
            self.add(node, f"{what} must be a mapping of keys to values")
            return None
        items: Items = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or not key_node.value:
                self.add(key_node, f"{what}: keys must be plain names")
                continue
            key = str(key_node.value)
            if key in items:
                self.add(key_node, f"{what}: {key!r} is given twice (first at line {line_of(items[key][0])})")
                continue
            items[key] = (key_node, value_node)
        return items

    def unknown_keys(
        self,
        items: Items,
        allowed: Sequence[str],
        where: str,
        elsewhere: tuple[Sequence[str], str] = ((), ""),
    ) -> None:
        """Report keys not in ``allowed``; ``elsewhere``: keys that belong in another place, and where."""
        for key, (key_node, _) in items.items():
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            if key in elsewhere[0]:
                hint = f" ({key} belongs in {elsewhere[1]})"
            elif close:
                hint = f" (did you mean {close[0]!r}?)"
            else:
                hint = " (see the sweep options in `loadgen sweep --help`: a plan takes their keys)"
            self.add(key_node, f"unknown key {key!r} in {where}{hint}")

    def integer(self, node: yaml.Node, what: str, minimum: int) -> int | None:
        value = self.value(node) if isinstance(node, yaml.ScalarNode) else None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.add(node, f"{what} must be a whole number >= {minimum}, got {shown(node)}")
            return None
        return value
