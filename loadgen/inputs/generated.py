"""Generated input data: ``random`` (seeded, so two runs with the same seed send the same bytes)
and ``zero``. Every input is generated, optional ones too, as perf_analyzer does."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from loadgen.errors import ConfigError
from loadgen.inputs.specs import NUMPY, InputSpec, Sample, Strings, fixed_shape

STRING_LENGTH = 16
MAX_SAMPLE_BYTES = 2**31 - 1
"""gRPC's limit on a message: an input larger than this could never be sent (nor, often, be made)."""


def generated(specs: Sequence[InputSpec], model: str, kind: str, rng: np.random.Generator) -> Sample:
    """One sample: uniform [0, 1) for floats, small integers otherwise, 16 letters per string."""
    sample: Sample = {}
    for spec in specs:
        shape = fixed_shape(spec, model)
        size = math.prod(shape) * (4 + STRING_LENGTH if spec.datatype == "BYTES" else spec.itemsize())
        if size > MAX_SAMPLE_BYTES:
            raise ConfigError(
                f"input {spec.name!r} of model {model!r} ({spec.describe()}) would be {size:,} bytes a "
                f"sample; a request holds at most {MAX_SAMPLE_BYTES:,}"
            )
        if spec.datatype == "BYTES":
            count = math.prod(shape)
            if kind == "zero":
                elements = (b"0" * STRING_LENGTH,) * count
            else:
                letters = rng.integers(ord("a"), ord("z"), size=(count, STRING_LENGTH), endpoint=True)
                elements = tuple(bytes(row.astype(np.uint8)) for row in letters)
            sample[spec.name] = Strings(elements, shape)
            continue
        dtype = np.dtype(NUMPY[spec.datatype])
        if kind == "zero":
            sample[spec.name] = np.zeros(shape, dtype)
        elif spec.datatype == "BOOL":
            sample[spec.name] = rng.integers(0, 2, size=shape).astype(np.bool_)
        elif dtype.kind == "f":
            sample[spec.name] = rng.random(size=shape).astype(dtype)
        else:
            info = np.iinfo(dtype)  # type: ignore[type-var]  # integer kinds only here
            low, high = max(info.min, -128), min(info.max, 127)
            sample[spec.name] = rng.integers(low, high, size=shape, endpoint=True).astype(dtype)
    return sample
