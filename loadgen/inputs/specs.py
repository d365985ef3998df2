"""What a model's inputs and outputs look like, and what one sample of data holds.

``InputSpec`` keeps the model's own dims beside the shape ``--shape`` settles, because
a data file's ``"shape"`` is checked against the model (as Triton will check it), not
against ``--shape``: perf_analyzer lets a file's shape override ``--shape``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from loadgen.errors import ConfigError

NUMPY: dict[str, type[np.generic]] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BF16": np.float32,  # generated or read as FP32, sent as the upper 16 bits (bfloat16)
}
MAX_SAMPLES = 100_000


@dataclass(frozen=True)
class InputSpec:
    """One model input (or output) as a request needs it: name, datatype and per-sample shape."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    """Without the batch dimension; ``--shape`` applied; -1 where the model accepts any size."""
    dims: tuple[int, ...] | None = None
    """The model's own dims (without the batch dimension), before ``--shape``; None: as ``shape``."""
    optional: bool = False
    """The model config marks it ``optional``: a data entry may leave it out."""
    role: str = "input"
    """``input``, or ``output`` for an expected output (``validation_data``, a directory's files)."""

    @property
    def label(self) -> str:
        return f"{self.role} {self.name!r}"

    @property
    def model_dims(self) -> tuple[int, ...]:
        return self.shape if self.dims is None else self.dims

    def describe(self) -> str:
        return f"{self.datatype} {list(self.shape)}"

    def describe_model(self) -> str:
        return f"{self.datatype} {list(self.model_dims)}"

    def fits(self, shape: Sequence[int]) -> bool:
        """Whether the model accepts a sample of this shape (ranks and fixed dims agree)."""
        dims = self.model_dims
        return len(shape) == len(dims) and all(d < 0 or d == s for d, s in zip(dims, shape, strict=True))

    def itemsize(self) -> int:
        return 2 if self.datatype == "BF16" else np.dtype(NUMPY[self.datatype]).itemsize


@dataclass(frozen=True)
class Strings:
    """One sample of a BYTES tensor: its elements, row-major, and their shape."""

    elements: tuple[bytes, ...]
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        assert math.prod(self.shape) == len(self.elements), (self.shape, len(self.elements))


Value = npt.NDArray[Any] | Strings
"""One input of one sample: an array (numeric types) or a BYTES tensor's elements."""
Sample = dict[str, Value]
"""One batch-1 sample by input name; an optional input a data entry leaves out is absent."""


def _optional_names(config: Mapping[str, Any]) -> set[str]:
    return {str(i.get("name")) for i in config.get("input", []) or [] if i.get("optional") is True}


def model_inputs(
    metadata: Mapping[str, Any], config: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]
) -> list[InputSpec]:
    """The model's inputs with ``--shape`` applied (and ``optional`` from the model config);
    unknown ``--shape`` names are errors."""
    batching = int(config.get("max_batch_size", 0) or 0) > 0
    optional = _optional_names(config)
    specs = []
    for entry in metadata.get("inputs", []):
        dims = tuple(int(d) for d in entry["shape"])
        if batching:
            dims = dims[1:]
        name = entry["name"]
        spec = InputSpec(name, entry["datatype"], dims, dims, name in optional)
        if name in shapes:
            given = shapes[name]
            if not spec.fits(given):
                raise ConfigError(
                    f"--shape {name}:{','.join(map(str, given))} does not fit the model's "
                    f"input {name!r} ({spec.describe()})"
                )
            spec = InputSpec(name, spec.datatype, given, dims, spec.optional)
        specs.append(spec)
    unknown = set(shapes) - {s.name for s in specs}
    if unknown:
        known = ", ".join(s.name for s in specs)
        raise ConfigError(
            f"--shape names unknown input(s) {', '.join(map(shown, sorted(unknown)))}; the model has: {known}"
        )
    return specs


def model_outputs(metadata: Mapping[str, Any], config: Mapping[str, Any]) -> list[InputSpec]:
    """The model's outputs, shaped as :func:`model_inputs` shapes inputs (expected outputs)."""
    specs = model_inputs({"inputs": metadata.get("outputs", [])}, {**config, "input": []}, {})
    return [replace(s, role="output") for s in specs]


def fixed_shape(spec: InputSpec, model: str) -> tuple[int, ...]:
    """The spec's shape, which generated data needs without variable dimensions."""
    if any(d < 0 for d in spec.shape):
        raise ConfigError(
            f"input {spec.name!r} of model {model!r} has a variable dimension "
            f"({spec.describe()}): give its size with --shape {spec.name}:..."
        )
    return spec.shape


def shown(name: str) -> str:
    """A name a user wrote, as an error shows it: quoted where it holds a line break or other control."""
    return name if name.isprintable() else repr(name)


def names(specs: Sequence[InputSpec]) -> str:
    """The specs as a user reads them in an error: ``INPUT0 (FP32 [4]), BIAS (FP32 [4], optional)``."""
    return ", ".join(f"{s.name} ({s.describe_model()}{', optional' if s.optional else ''})" for s in specs)
