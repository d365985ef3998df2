"""argparse types for the commands' own options (files, ports, counts), checked before anything runs.

A value that cannot work is refused while the command line is read, in one line that names the
option (argparse puts ``argument --csv:`` in front): a sweep must not run for minutes and then
fail to write its CSV into a folder that does not exist.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


def text(value: str) -> str:
    """Any non-empty text."""
    if not value.strip():
        raise argparse.ArgumentTypeError("is empty")
    return value


def model_name(value: str) -> str:
    """A name Triton can serve from a folder: no path separators, spaces or leading dot."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", value):
        raise argparse.ArgumentTypeError(
            f"must be letters, digits, '_', '-' or '.' (not first), got {value!r}"
        )
    return value


def run_ref(value: str) -> str:
    """A run id, or ``group:ID``: the runs of one ``--repeats`` sweep (or of several models at once)."""
    group = value.removeprefix("group:")
    if value.startswith("group:") and group and group == group.strip():
        return value
    if value.isdigit():
        return value
    raise argparse.ArgumentTypeError(f"must be a run id or group:ID, got {value!r}")


def whole(value: str, low: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= {low}, got {value!r}") from None
    if number < low:
        raise argparse.ArgumentTypeError(f"must be a whole number >= {low}, got {value!r}")
    return number


def count(value: str) -> int:
    """A whole number >= 1."""
    return whole(value, 1)


def level(value: str) -> int:
    """A whole number >= 0."""
    return whole(value, 0)


def port(value: str) -> int:
    """A TCP port, 1..65535."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port within 1..65535, got {value!r}")
    return number


def output_file(value: str) -> Path:
    """A file to write: not empty, not a folder, in a folder that exists."""
    path = Path(text(value)).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} is a folder: give a file name")
    if not path.absolute().parent.is_dir():
        raise argparse.ArgumentTypeError(
            f"cannot write {value!r}: the folder {str(path.parent)!r} does not exist"
        )
    return path


def output_folder(value: str) -> Path:
    """A folder to write into (made if missing): its parent must exist."""
    path = Path(text(value)).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} is a file: give a folder")
    if not path.absolute().parent.is_dir():
        raise argparse.ArgumentTypeError(
            f"cannot make {value!r}: the folder {str(path.parent)!r} does not exist"
        )
    return path


def existing_file(value: str) -> Path:
    path = Path(text(value)).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {value!r}")
    return path


def existing_folder(value: str) -> Path:
    path = Path(text(value)).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {value!r}")
    return path


_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
)


def host(value: str) -> str:
    """An address to listen on: an IP address or a host name."""
    looks_numeric = re.fullmatch(r"[0-9.]+", value) is not None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if looks_numeric or not _HOSTNAME.fullmatch(value):
            raise argparse.ArgumentTypeError(
                f"expected an IP address or a host name, got {value!r}"
            ) from None
    return value


def parsed(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from one of the settings' parsers (which raise ``ConfigError``)."""
    from loadgen.errors import ConfigError

    def convert(value: str) -> T:
        try:
            return parse(value)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def microseconds(value: str) -> int:
    """A delay such as ``100us``, ``0.5ms`` or ``100`` (microseconds), >= 0."""
    from loadgen.config.values import duration_us

    return parsed(duration_us)(value)


def http_url(value: str) -> str:
    """An ``http://`` or ``https://`` URL with a host."""
    parts = urlsplit(text(value))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL, got {value!r}")
    return value
