"""Input tensors built from the model's own metadata, once per run.

Random data comes from a seeded generator, so two runs with the same seed send
the same bytes; the tensors are serialized once by the transport and reused.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from loadgen.config import ConfigError
from loadgen.transports.base import InferRequestSpec, InputTensor

_NUMPY = {
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
}
STRING_LENGTH = 16


def _random(datatype: str, shape: tuple[int, ...], rng: np.random.Generator) -> npt.NDArray[Any]:
    dtype = np.dtype(_NUMPY[datatype])
    if datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if dtype.kind == "f":
        return rng.random(size=shape).astype(dtype)
    info = np.iinfo(dtype)  # type: ignore[type-var]  # integer kinds only here
    return rng.integers(max(info.min, -128), min(info.max, 127), size=shape, endpoint=True).astype(dtype)


def _bytes_tensor(shape: tuple[int, ...], rng: np.random.Generator | None) -> bytes:
    """BYTES elements as Triton expects them: 4-byte little-endian length, then the bytes."""
    count = int(np.prod(shape))
    chunks = []
    for _ in range(count):
        if rng is None:
            element = b"0" * STRING_LENGTH
        else:
            element = bytes(
                rng.integers(ord("a"), ord("z"), size=STRING_LENGTH, endpoint=True).astype(np.uint8)
            )
        chunks.append(len(element).to_bytes(4, "little") + element)
    return b"".join(chunks)


def build_request(
    metadata: dict[str, Any],
    config: dict[str, Any],
    *,
    batch_size: int,
    input_data: str,
    seed: int,
    model_version: str = "",
) -> InferRequestSpec:
    """A request for ``metadata``'s model with every input filled.

    ``metadata`` and ``config`` are Triton's model metadata and model config as JSON.
    """
    max_batch = int(config.get("max_batch_size", 0) or 0)
    if max_batch == 0 and batch_size > 1:
        raise ConfigError(
            f"model {metadata['name']!r} does not support batching (max_batch_size 0): --batch-size must be 1"
        )
    if max_batch and batch_size > max_batch:
        raise ConfigError(f"--batch-size {batch_size} exceeds the model's max_batch_size {max_batch}")
    rng = np.random.default_rng(seed) if input_data == "random" else None
    tensors = []
    for spec in metadata.get("inputs", []):
        name, datatype = spec["name"], spec["datatype"]
        dims = [int(d) for d in spec["shape"]]
        if max_batch:
            dims = [batch_size, *dims[1:]]
        if any(d < 0 for d in dims):
            raise ConfigError(
                f"input {name!r} of model {metadata['name']!r} has a variable dimension "
                f"{spec['shape']}: this version of loadgen needs fixed shapes"
            )
        shape = tuple(dims)
        if datatype == "BYTES":
            data = _bytes_tensor(shape, rng)
        elif datatype in _NUMPY:
            array = _random(datatype, shape, rng) if rng is not None else np.zeros(shape, _NUMPY[datatype])
            data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        else:
            raise ConfigError(f"input {name!r} has datatype {datatype}, which loadgen cannot generate yet")
        tensors.append(InputTensor(name, datatype, shape, data))
    outputs = tuple(o["name"] for o in metadata.get("outputs", []))
    return InferRequestSpec(metadata["name"], tuple(tensors), outputs, model_version)
