"""``.npy``/``.npz`` input data: one array per input, an optional leading axis of samples."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from loadgen.errors import ConfigError
from loadgen.inputs.specs import MAX_SAMPLES, InputSpec, Sample, Value, names
from loadgen.inputs.values import from_list


def read_numpy_samples(path: Path, specs: Sequence[InputSpec]) -> list[Sample]:
    """``.npz``: one array per input name (an optional input may be absent); ``.npy``: the only
    input. Arrays that name no input are refused, as a data file's unknown keys are."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read input data {str(path)!r}: {exc}") from exc
    if isinstance(loaded, np.ndarray):
        required = [s for s in specs if not s.optional]
        if len(specs) != 1 and len(required) != 1:
            raise ConfigError(
                f"{path}: a .npy file feeds a model with one input; this one has {names(specs)}: use .npz"
            )
        arrays: dict[str, npt.NDArray[Any]] = {(required or list(specs))[0].name: loaded}
    else:
        with loaded:
            arrays = {name: loaded[name] for name in loaded.files}
    unknown = [name for name in arrays if name not in {s.name for s in specs}]
    if unknown:
        raise ConfigError(
            f"{path}: array(s) {', '.join(map(repr, unknown))} name no input; the model has: {names(specs)}"
        )
    counts = set()
    per_input: dict[str, list[Value]] = {}
    for spec in specs:
        if spec.name not in arrays:
            if spec.optional:
                continue
            raise ConfigError(f"{path} has no array named {spec.name!r} ({spec.describe()})")
        array = arrays[spec.name]
        rank = len(spec.shape)
        if array.ndim == rank:
            array = array[np.newaxis]
        if array.ndim != rank + 1 or any(
            d >= 0 and d != a for d, a in zip(spec.shape, array.shape[1:], strict=True)
        ):
            raise ConfigError(
                f"{path}: array {spec.name!r} has shape {list(array.shape)}, the model expects "
                f"{spec.describe()} per sample (optionally with a leading sample axis)"
            )
        samples = array[:MAX_SAMPLES]
        per_input[spec.name] = [from_list(a, spec, tuple(a.shape), str(path)) for a in samples]
        counts.add(len(per_input[spec.name]))
    if len(counts) > 1:
        raise ConfigError(f"{path}: the arrays hold different numbers of samples ({sorted(counts)})")
    if not counts or counts == {0}:
        raise ConfigError(f"{path}: the arrays hold no samples")
    return [{name: values[i] for name, values in per_input.items()} for i in range(counts.pop())]
