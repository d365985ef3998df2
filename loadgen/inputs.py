"""Input tensors for a model, built once per run from its metadata and the user's data.

Sources: ``random`` (seeded, so two runs with the same seed send the same bytes),
``zero``, perf_analyzer's JSON input-data file (several entries, cycled; flat or
nested lists, ``{"content": ..., "shape": ...}`` and ``{"b64": ...}`` values,
strings for BYTES inputs), and ``.npy``/``.npz`` files. Each data entry is one
sample (a batch-1 request); a request of batch size B stacks B consecutive
samples. Every tensor is serialized once by the transport and reused.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from loadgen.errors import ConfigError
from loadgen.transports.base import InferRequestSpec, InputTensor, OutputTensor

_NUMPY: dict[str, type[np.generic]] = {
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
STRING_LENGTH = 16
MAX_SAMPLES = 100_000


@dataclass(frozen=True)
class InputSpec:
    """One model input as the request needs it: name, datatype and per-sample shape."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    """Without the batch dimension; -1 where the model accepts any size."""

    def describe(self) -> str:
        return f"{self.datatype} {list(self.shape)}"


Sample = dict[str, "npt.NDArray[Any] | list[bytes]"]
"""Per input: an array (numeric types), or the list of elements of a BYTES tensor."""


def model_inputs(
    metadata: Mapping[str, Any], config: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]
) -> list[InputSpec]:
    """The model's inputs with ``--shape`` applied; unknown ``--shape`` names are errors."""
    batching = int(config.get("max_batch_size", 0) or 0) > 0
    specs = []
    for entry in metadata.get("inputs", []):
        dims = tuple(int(d) for d in entry["shape"])
        if batching:
            dims = dims[1:]
        name = entry["name"]
        if name in shapes:
            given = shapes[name]
            if len(given) != len(dims) or any(d >= 0 and d != g for d, g in zip(dims, given, strict=True)):
                raise ConfigError(
                    f"--shape {name}:{','.join(map(str, given))} does not fit the model's "
                    f"input {name!r} ({entry['datatype']} {list(dims)})"
                )
            dims = given
        specs.append(InputSpec(name, entry["datatype"], dims))
    unknown = set(shapes) - {s.name for s in specs}
    if unknown:
        known = ", ".join(s.name for s in specs)
        raise ConfigError(
            f"--shape names unknown input(s) {', '.join(sorted(unknown))}; the model has: {known}"
        )
    return specs


def _fixed(spec: InputSpec, model: str) -> tuple[int, ...]:
    if any(d < 0 for d in spec.shape):
        raise ConfigError(
            f"input {spec.name!r} of model {model!r} has a variable dimension "
            f"({spec.describe()}): give its size with --shape {spec.name}:..."
        )
    return spec.shape


def _generated(specs: Sequence[InputSpec], model: str, kind: str, rng: np.random.Generator) -> Sample:
    sample: Sample = {}
    for spec in specs:
        shape = _fixed(spec, model)
        if spec.datatype == "BYTES":
            count = math.prod(shape)
            if kind == "zero":
                sample[spec.name] = [b"0" * STRING_LENGTH] * count
            else:
                letters = rng.integers(ord("a"), ord("z"), size=(count, STRING_LENGTH), endpoint=True)
                sample[spec.name] = [bytes(row.astype(np.uint8)) for row in letters]
            continue
        dtype = np.dtype(_NUMPY[spec.datatype])
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


def _array(value: Any, spec: InputSpec, shape: tuple[int, ...], where: str) -> npt.NDArray[Any] | list[bytes]:
    if spec.datatype == "BYTES":
        flat = np.asarray(value, dtype=object).ravel().tolist()
        elements = [v.encode() if isinstance(v, str) else bytes(v) for v in flat]
        if shape and len(elements) != math.prod(shape):
            raise ConfigError(
                f"{where}: {len(elements)} strings for input {spec.name!r}, "
                f"which needs {math.prod(shape)} ({spec.describe()})"
            )
        return elements
    try:
        array = np.asarray(value, dtype=_NUMPY[spec.datatype])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: data for input {spec.name!r} is not {spec.datatype}: {exc}") from None
    if array.size != math.prod(shape):
        raise ConfigError(
            f"{where}: {array.size} values for input {spec.name!r}, which needs "
            f"{math.prod(shape)} ({spec.datatype} {list(shape)})"
        )
    return array.reshape(shape)


def _from_json_value(value: Any, spec: InputSpec, model: str, where: str) -> npt.NDArray[Any] | list[bytes]:
    shape = spec.shape
    if isinstance(value, dict):
        if "shape" in value:
            shape = tuple(int(d) for d in value["shape"])
        if "b64" in value:
            raw = base64.b64decode(value["b64"])
            if spec.datatype != "BYTES":
                itemsize = 2 if spec.datatype == "BF16" else np.dtype(_NUMPY[spec.datatype]).itemsize
                if any(d < 0 for d in shape):
                    shape = (len(raw) // itemsize,) if len(shape) == 1 else _fixed(spec, model)
                if len(raw) != math.prod(shape) * itemsize:
                    raise ConfigError(
                        f"{where}: b64 data for input {spec.name!r} has {len(raw)} bytes, "
                        f"{spec.datatype} {list(shape)} needs {math.prod(shape) * itemsize}"
                    )
                if spec.datatype == "BF16":  # widen to FP32 (exactly), narrowed again when sent
                    return (np.frombuffer(raw, "<u2").astype("<u4") << 16).view("<f4").reshape(shape)
                return np.frombuffer(raw, np.dtype(_NUMPY[spec.datatype]).newbyteorder("<")).reshape(shape)
            return _bytes_elements(raw, spec, where)
        if "content" not in value:
            raise ConfigError(
                f"{where}: input {spec.name!r} needs a list, or an object with 'content' or 'b64'"
            )
        value = value["content"]
    if any(d < 0 for d in shape):
        shape = (int(np.asarray(value, dtype=object).size),) if len(shape) == 1 else _fixed(spec, model)
    return _array(value, spec, shape, where)


def _bytes_elements(raw: bytes, spec: InputSpec, where: str) -> list[bytes]:
    """Raw BYTES tensor data: a sequence of 4-byte little-endian lengths, each followed by its bytes."""
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ConfigError(f"{where}: b64 data for BYTES input {spec.name!r} is not length-prefixed")
        size = int.from_bytes(raw[offset : offset + 4], "little")
        elements.append(raw[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return elements


def read_json_samples(path: Path, specs: Sequence[InputSpec], model: str) -> list[Sample]:
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read input data {str(path)!r}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}") from exc
    entries = document.get("data") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(
            f'{path}: expected perf_analyzer\'s format {{"data": [{{INPUT: values, ...}}, ...]}}'
        )
    samples = []
    for number, entry in enumerate(entries[:MAX_SAMPLES]):
        if isinstance(entry, list):
            raise ConfigError(f"{path}: data entry {number} is a list (sequence streams are not supported)")
        where = f"{path}: data entry {number}"
        missing = [s for s in specs if s.name not in entry]
        if missing:
            raise ConfigError(f"{where} has no data for input {missing[0].name!r} ({missing[0].describe()})")
        samples.append({s.name: _from_json_value(entry[s.name], s, model, where) for s in specs})
    return samples


def read_numpy_samples(path: Path, specs: Sequence[InputSpec], model: str) -> list[Sample]:
    """``.npz``: one array per input name; ``.npy``: the only input. A leading axis is samples."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read input data {str(path)!r}: {exc}") from exc
    if isinstance(loaded, np.ndarray):
        if len(specs) != 1:
            names = ", ".join(s.name for s in specs)
            raise ConfigError(
                f"{path}: a .npy file feeds a model with one input; this one has {names}: use .npz"
            )
        arrays = {specs[0].name: loaded}
    else:
        with loaded:
            arrays = {name: loaded[name] for name in loaded.files}
    counts = set()
    per_input: dict[str, list[npt.NDArray[Any]]] = {}
    for spec in specs:
        if spec.name not in arrays:
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
        per_input[spec.name] = [_array(a, spec, tuple(a.shape), str(path)) for a in array[:MAX_SAMPLES]]  # type: ignore[misc]
        counts.add(len(per_input[spec.name]))
    if len(counts) != 1:
        raise ConfigError(f"{path}: the arrays hold different numbers of samples ({sorted(counts)})")
    if counts == {0}:
        raise ConfigError(f"{path}: the arrays hold no samples")
    return [{name: values[i] for name, values in per_input.items()} for i in range(counts.pop())]


def _serialize(
    spec: InputSpec, parts: Sequence[npt.NDArray[Any] | list[bytes]], batched: bool
) -> InputTensor:
    if spec.datatype == "BYTES":
        elements = [e for part in parts if isinstance(part, list) for e in part]  # BYTES samples are lists
        data = b"".join(len(e).to_bytes(4, "little") + e for e in elements)
        per_sample = len(elements) // len(parts)
        shape: tuple[int, ...] = (per_sample,) if not spec.shape or spec.shape[0] < 0 else spec.shape
        if math.prod(shape) != per_sample:
            shape = (per_sample,)
    else:
        arrays = [p for p in parts if isinstance(p, np.ndarray)]
        if len(arrays) != len(parts) or len({a.shape for a in arrays}) != 1:
            raise ConfigError(f"the samples batched together give input {spec.name!r} different shapes")
        stacked = np.ascontiguousarray(np.stack(arrays))
        shape = tuple(arrays[0].shape)
        if spec.datatype == "BF16":
            data = (stacked.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
        else:
            data = stacked.astype(stacked.dtype.newbyteorder("<")).tobytes()
    full = (len(parts), *shape) if batched else shape
    return InputTensor(spec.name, spec.datatype, tuple(full), data)


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
    if input_data in ("random", "zero"):
        rng = np.random.default_rng(seed)
        samples = [_generated(specs, model, input_data, rng) for _ in range(generated_samples)]
    else:
        path = Path(input_data)
        if path.suffix in (".npy", ".npz"):
            samples = read_numpy_samples(path, specs, model)
        else:
            samples = read_json_samples(path, specs, model)
    outputs = tuple(o["name"] for o in metadata.get("outputs", []))
    batched = max_batch > 0
    requests = []
    for k in range(math.ceil(len(samples) / batch_size)):
        chosen = [samples[(k * batch_size + i) % len(samples)] for i in range(batch_size)]
        tensors = tuple(_serialize(spec, [s[spec.name] for s in chosen], batched) for spec in specs)
        requests.append(InferRequestSpec(model, tensors, outputs, model_version))
    return requests


def read_references(
    path: Path, metadata: Mapping[str, Any], config: Mapping[str, Any], batch_size: int
) -> list[dict[str, OutputTensor]] | None:
    """Expected outputs from the ``validation_data`` of a perf_analyzer JSON file, one per request
    (entries batched as :func:`build_requests` batches ``data``); None if the file has none."""
    if path.suffix in (".npy", ".npz"):
        return None
    document = json.loads(path.read_text())
    entries = document.get("validation_data") if isinstance(document, dict) else None
    if entries is None:
        return None
    model = str(metadata["name"])
    data = document.get("data") or []
    if not isinstance(entries, list) or len(entries) != len(data):
        raise ConfigError(
            f"{path}: validation_data needs one entry per data entry ({len(data)}), "
            f"found {len(entries) if isinstance(entries, list) else 'no list'}"
        )
    specs = model_inputs({"inputs": metadata.get("outputs", [])}, config, {})
    batched = int(config.get("max_batch_size", 0) or 0) > 0
    samples = []
    for number, entry in enumerate(entries[:MAX_SAMPLES]):
        where = f"{path}: validation_data entry {number}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} is not an object of outputs")
        unknown = set(entry) - {s.name for s in specs}
        if unknown:
            names = ", ".join(s.name for s in specs)
            raise ConfigError(
                f"{where} names unknown output(s) {', '.join(sorted(unknown))}; the model has: {names}"
            )
        samples.append(
            {s.name: _from_json_value(entry[s.name], s, model, where) for s in specs if s.name in entry}
        )
    references = []
    for k in range(math.ceil(len(samples) / batch_size)):
        chosen = [samples[(k * batch_size + i) % len(samples)] for i in range(batch_size)]
        tensors = [
            _serialize(spec, [c[spec.name] for c in chosen], batched)
            for spec in specs
            if spec.name in chosen[0]
        ]
        references.append({t.name: OutputTensor(t.name, t.datatype, t.shape, t.data) for t in tensors})
    return references
