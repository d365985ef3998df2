"""Samples into requests: a request of batch size B stacks B consecutive samples, cycling.

Samples batched together must agree on which inputs they give and on their shapes (a
batch is one rectangular tensor per input); a disagreement is refused before the run,
naming both entries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loadgen.errors import ConfigError
from loadgen.inputs.directory import read_directory_references, read_directory_samples
from loadgen.inputs.generated import generated
from loadgen.inputs.json_data import read_json_references, read_json_samples
from loadgen.inputs.numpy_data import read_numpy_samples
from loadgen.inputs.specs import InputSpec, Sample, Strings, Value, model_inputs, model_outputs
from loadgen.transports.base import InferRequestSpec, InputTensor, OutputTensor

NUMPY_SUFFIXES = (".npy", ".npz")


def batches(samples: Sequence[Sample], batch_size: int, what: str) -> list[list[Sample]]:
    """``ceil(n / B)`` batches of B samples, cycling; ``what`` names the samples in errors
    (``FILE: data entries``)."""
    result = []
    for k in range(math.ceil(len(samples) / batch_size)):
        numbers = [(k * batch_size + i) % len(samples) for i in range(batch_size)]
        first = samples[numbers[0]]
        for number in numbers[1:]:
            other = samples[number]
            problem = _disagreement(first, other, numbers[0], number)
            if problem:
                raise ConfigError(
                    f"{what} {numbers[0]} and {number} are batched together (--batch-size {batch_size}) "
                    f"but disagree: {problem}"
                )
        result.append([samples[n] for n in numbers])
    return result


def _disagreement(a: Sample, b: Sample, first: int, second: int) -> str:
    for name in (*a, *(n for n in b if n not in a)):
        if (name in a) != (name in b):
            given, left_out = (first, second) if name in a else (second, first)
            return f"entry {given} gives {name!r}, entry {left_out} does not"
        if a[name].shape != b[name].shape:
            shapes = f"{list(a[name].shape)} in entry {first} and {list(b[name].shape)} in entry {second}"
            return f"{name!r} has shape {shapes}"
    return ""


def _serialize(spec: InputSpec, parts: Sequence[Value], batched: bool) -> InputTensor:
    strings = [p for p in parts if isinstance(p, Strings)]
    if strings:
        data = b"".join(len(e).to_bytes(4, "little") + e for s in strings for e in s.elements)
    else:
        stacked = np.ascontiguousarray(np.stack([p for p in parts if isinstance(p, np.ndarray)]))
        if spec.datatype == "BF16":
            data = (stacked.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
        else:
            data = stacked.astype(stacked.dtype.newbyteorder("<")).tobytes()
    shape = tuple(parts[0].shape)
    return InputTensor(spec.name, spec.datatype, (len(parts), *shape) if batched else shape, data)


def _tensors(specs: Sequence[InputSpec], chosen: Sequence[Sample], batched: bool) -> list[InputTensor]:
    """The batch's tensors, in the model's order; an optional input the samples leave out is left out."""
    return [_serialize(s, [c[s.name] for c in chosen], batched) for s in specs if s.name in chosen[0]]


def build_requests(
    metadata: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    batch_size: int,
    input_data: str,
    seed: int,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    model_version: str = "",
    generated_samples: int = 1,
) -> list[InferRequestSpec]:
    """The requests a run cycles through: one per batch of samples (``generated_samples`` for
    random/zero data: ``--validate`` sends several distinct inputs so that a swapped answer shows)."""
    model = str(metadata["name"])
    max_batch = int(config.get("max_batch_size", 0) or 0)
    if max_batch == 0 and batch_size > 1:
        raise ConfigError(
            f"model {model!r} does not support batching (max_batch_size 0): --batch-size must be 1"
        )
    if max_batch and batch_size > max_batch:
        raise ConfigError(f"--batch-size {batch_size} exceeds the model's max_batch_size {max_batch}")
    specs = model_inputs(metadata, config, shapes or {})
    what = "samples"
    if input_data in ("random", "zero"):
        rng = np.random.default_rng(seed)
        samples = [generated(specs, model, input_data, rng) for _ in range(generated_samples)]
    else:
        path = Path(input_data)
        if path.is_dir():
            samples = read_directory_samples(path, specs, model_outputs(metadata, config), model)
        elif path.suffix in NUMPY_SUFFIXES:
            samples = read_numpy_samples(path, specs)
        else:
            samples, what = read_json_samples(path, specs), f"{path}: data entries"
    outputs = tuple(o["name"] for o in metadata.get("outputs", []))
    return [
        InferRequestSpec(model, tuple(_tensors(specs, chosen, max_batch > 0)), outputs, model_version)
        for chosen in batches(samples, batch_size, what)
    ]


def read_references(
    path: Path, metadata: Mapping[str, Any], config: Mapping[str, Any], batch_size: int
) -> list[dict[str, OutputTensor]] | None:
    """Expected outputs, one per request (batched as :func:`build_requests` batches the samples):
    a JSON file's ``validation_data`` or a directory's output files; None if there are none."""
    outputs = model_outputs(metadata, config)
    if path.is_dir():
        specs = model_inputs(metadata, config, {})
        samples, what = read_directory_references(path, specs, outputs), str(path)
    elif path.suffix in NUMPY_SUFFIXES:
        return None
    else:
        samples, what = read_json_references(path, outputs), f"{path}: validation_data entries"
    if samples is None:
        return None
    batched = int(config.get("max_batch_size", 0) or 0) > 0
    return [
        {t.name: OutputTensor(t.name, t.datatype, t.shape, t.data) for t in tensors}
        for tensors in (_tensors(outputs, chosen, batched) for chosen in batches(samples, batch_size, what))
    ]
