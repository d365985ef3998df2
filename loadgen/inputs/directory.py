"""perf_analyzer's input-data directory: one file per input, named as the input.

A non-BYTES file holds the raw little-endian, row-major bytes of one batch-1 sample; a
BYTES file is text, one element per line. A file named as an output holds that output's
expected value for ``--validate``, in the same formats. The directory is one sample:
every request sends it (a batch of B repeats it B times).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from loadgen.errors import ConfigError
from loadgen.inputs.specs import InputSpec, Sample, Value, fixed_shape, names
from loadgen.inputs.values import from_list, from_raw


def _files(path: Path, specs: Sequence[InputSpec], outputs: Sequence[InputSpec]) -> dict[str, Path]:
    """The directory's files by name; hidden files (``.DS_Store``) aside, each names an input or output."""
    try:
        found = {p.name: p for p in path.iterdir() if not p.name.startswith(".")}
    except OSError as exc:
        raise ConfigError(f"cannot read input data {str(path)!r}: {exc.strerror}") from exc
    known = {s.name for s in (*specs, *outputs)}
    unknown = sorted(set(found) - known)
    if unknown:
        raise ConfigError(
            f"{path}: file(s) {', '.join(map(repr, unknown))} name neither an input nor an output; "
            f"the model has inputs {names(specs)}; outputs {names(outputs)}"
        )
    return found


def _read(file: Path, spec: InputSpec, shape: tuple[int, ...] | None) -> Value:
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read input data {str(file)!r}: {exc.strerror}") from exc
    if spec.datatype != "BYTES":
        return from_raw(raw, spec, shape, str(file), "raw data")
    lines = raw.split(b"\n")
    if lines[-1] == b"":  # the newline that ends the last line
        lines.pop()
    return from_list(lines, spec, shape, str(file))


def read_directory_samples(
    path: Path, specs: Sequence[InputSpec], outputs: Sequence[InputSpec], model: str
) -> list[Sample]:
    """The one sample the directory holds; a missing non-optional input is an error."""
    files = _files(path, specs, outputs)
    sample: Sample = {}
    for spec in specs:
        if spec.name not in files:
            if spec.optional:
                continue
            raise ConfigError(
                f"{path} has no file {spec.name!r} for input {spec.name!r} ({spec.describe()}): "
                "a directory holds one file per input, named as the input"
            )
        sample[spec.name] = _read(files[spec.name], spec, fixed_shape(spec, model))
    return [sample]


def read_directory_references(
    path: Path, specs: Sequence[InputSpec], outputs: Sequence[InputSpec]
) -> list[Sample] | None:
    """The expected outputs among the directory's files (a variable size of a one-dimensional output is
    read from the file); None if it has none."""
    files = _files(path, specs, outputs)
    sample: Sample = {}
    for spec in outputs:
        if spec.name not in files:
            continue
        if any(d < 0 for d in spec.shape) and len(spec.shape) != 1:
            raise ConfigError(
                f"{files[spec.name]}: output {spec.name!r} ({spec.describe()}) has a shape that a raw "
                "file cannot give: use a JSON file's validation_data"
            )
        sample[spec.name] = _read(files[spec.name], spec, None)
    return [sample] if sample else None
