"""perf_analyzer's JSON input-data file: ``{"data": [entry, ...], "validation_data": [...]}``.

Each entry of ``data`` is one sample: an object with a value per input (see
:mod:`loadgen.inputs.values`); an optional input may be left out. ``validation_data``
holds the expected outputs, one entry per data entry (an output it leaves out goes
unchecked). A key that names no input is
refused rather than ignored (perf_analyzer ignores it): a typo would otherwise send
random data, or leave out an optional input, without a word.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadgen.errors import ConfigError
from loadgen.inputs.specs import MAX_SAMPLES, InputSpec, Sample, names, shown
from loadgen.inputs.values import decode, kind_of

_TOP_KEYS = ("data", "validation_data")
UNSUPPORTED = "ipc_stream"
"""perf_analyzer's key for data streamed to a decoupled model; not supported yet."""


def read_document(path: Path) -> dict[str, Any]:
    """The file as JSON, with a non-empty ``data`` list and no key perf_analyzer's format lacks."""
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read input data {str(path)!r}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (not UTF-8 text: {exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}") from exc
    except ValueError:  # an integer of more digits than Python converts (4300)
        raise ConfigError(f"{path}: not valid JSON for loadgen (a number too long to read)") from None
    except RecursionError:
        raise ConfigError(
            f"{path}: not valid JSON for loadgen (lists or objects nested too deeply)"
        ) from None
    if isinstance(document, dict) and UNSUPPORTED in document:
        raise ConfigError(f"{path}: {UNSUPPORTED} data is not supported yet")
    entries = document.get("data") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(
            f'{path}: expected perf_analyzer\'s format {{"data": [{{INPUT: values, ...}}, ...]}}'
        )
    checked: dict[str, Any] = document
    unknown = [k for k in checked if k not in _TOP_KEYS]
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(map(repr, unknown))} at the top level; "
            'perf_analyzer\'s format has "data" and "validation_data"'
        )
    return checked


def _entry(entry: Any, specs: Sequence[InputSpec], where: str, noun: str) -> Sample:
    """One entry's values; every non-optional input is required, no output is."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} is {kind_of(entry)}, not an object of {noun}s")
    by_name = {s.name: s for s in specs}
    if UNSUPPORTED in entry and UNSUPPORTED not in by_name:
        raise ConfigError(f"{where}: {UNSUPPORTED} entries are not supported yet")
    unknown = [k for k in entry if k not in by_name]
    if unknown:
        listed = ", ".join(map(shown, sorted(unknown)))
        raise ConfigError(f"{where} names unknown {noun}(s) {listed}; the model has: {names(specs)}")
    missing = [s for s in specs if s.name not in entry and s.role == "input" and not s.optional]
    if missing:
        raise ConfigError(f"{where} has no data for {noun} {missing[0].name!r} ({missing[0].describe()})")
    return {name: decode(value, by_name[name], where) for name, value in entry.items()}


def stream_lengths(path: Path) -> list[int] | None:
    """perf_analyzer's data for a sequence model: ``data`` as a list of streams (each a list of
    entries: one sequence's steps, in order); their lengths, or None for a flat list of entries."""
    return _lengths(read_document(path)["data"], path)


def _lengths(entries: list[Any], path: Path) -> list[int] | None:
    """:func:`stream_lengths` of a document already read."""
    if not any(isinstance(entry, list) for entry in entries):
        return None
    if not all(isinstance(entry, list) and entry for entry in entries):
        raise ConfigError(
            f"{path}: data mixes streams (lists of entries, one per sequence) with single entries, "
            "or holds an empty stream: give only streams or only entries"
        )
    return [len(entry) for entry in entries]


def read_json_samples(path: Path, specs: Sequence[InputSpec]) -> list[Sample]:
    """The samples of ``data``, in order (a stream's entries one after another)."""
    entries = read_document(path)["data"]
    if _lengths(entries, path) is None:
        places = [(entry, f"data entry {number}") for number, entry in enumerate(entries)]
    else:
        places = [
            (entry, f"data stream {number} entry {step}")
            for number, stream in enumerate(entries)
            for step, entry in enumerate(stream)
        ]
    return [_entry(entry, specs, f"{path}: {where}", "input") for entry, where in places[:MAX_SAMPLES]]


def read_json_references(path: Path, outputs: Sequence[InputSpec]) -> list[Sample] | None:
    """The expected outputs of ``validation_data`` (an output an entry leaves out goes unchecked);
    None if the file has none."""
    document = read_document(path)
    entries = document.get("validation_data")
    if entries is None:
        return None
    data = document["data"]
    if _lengths(data, path) is not None:
        raise ConfigError(
            f"{path}: validation_data with sequence streams is not supported: --validate takes each "
            "stream's answers run alone as its reference; remove validation_data"
        )
    if not isinstance(entries, list) or len(entries) != len(data):
        raise ConfigError(
            f"{path}: validation_data needs one entry per data entry ({len(data)}), "
            f"found {len(entries) if isinstance(entries, list) else 'no list'}"
        )
    return [
        _entry(entry, outputs, f"{path}: validation_data entry {number}", "output")
        for number, entry in enumerate(entries[:MAX_SAMPLES])
    ]
