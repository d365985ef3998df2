"""``model add --validate``: the served model answers as the ONNX file does run locally.

The reference is onnxruntime on this machine with one intra-op thread, the runtime and thread
count the Python backend's runner uses, so a FP32 model served that way must agree bit for bit;
an FP16 conversion or a TensorRT plan must agree within the FP16 tolerance ``--validate`` uses for
sweeps, and Triton's own ONNX Runtime backend (other kernels, other threads) within FP32's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from loadgen.deploy.onnx_signature import OnnxSignature, TensorSpec
from loadgen.errors import ConfigError
from loadgen.scrape.server_api import ServerAPI
from loadgen.validation import DEFAULT_TOLERANCES, Tolerance

REQUESTS = 4
SEED = 20261207
OPEN_DIM = 4
"""The size given to a dimension the graph leaves open (the batch aside)."""


@dataclass(frozen=True)
class Agreement:
    """One output over every request: the largest difference from the local run, and the bar."""

    output: str
    max_abs_diff: float
    """inf where a shape differs."""
    ok: bool
    tolerance: Tolerance | None
    """None: bit for bit."""

    def __str__(self) -> str:
        bar = "bit for bit" if self.tolerance is None else f"within {self.tolerance}"
        verdict = "agrees" if self.ok else "DIFFERS"
        return f"{self.output}: {verdict} {bar} (largest difference {self.max_abs_diff:.3g})"


def expected_bar(backend: str, fp16: bool) -> Tolerance | None:
    if fp16 or backend == "tensorrt":
        return DEFAULT_TOLERANCES["FP16"]
    return None if backend == "python" else DEFAULT_TOLERANCES["FP32"]


def _dtype(tensor: TensorSpec) -> npt.DTypeLike:
    from tritonclient.utils import triton_to_np_dtype

    name = tensor.datatype.removeprefix("TYPE_")
    if name in ("STRING", "BF16"):
        raise ConfigError(f"--validate cannot make {name} values for input {tensor.name!r}")
    dtype: npt.DTypeLike = triton_to_np_dtype(name)
    return dtype


def sample_inputs(
    signature: OnnxSignature, max_batch_size: int, count: int = REQUESTS
) -> list[dict[str, Any]]:
    """Seeded random requests; a model Triton batches (``max_batch_size`` above 0) gets batches of
    1, 2, ... up to its max batch size."""
    rng = np.random.default_rng(SEED)
    requests = []
    for i in range(count):
        arrays = {}
        for tensor in signature.inputs:
            dims = [OPEN_DIM if d < 0 else d for d in tensor.dims]
            if max_batch_size:
                dims[0] = min(i + 1, max_batch_size)
            dtype = np.dtype(_dtype(tensor))
            if dtype.kind == "f":
                arrays[tensor.name] = rng.random(dims).astype(dtype)
            elif dtype.kind == "b":
                arrays[tensor.name] = rng.random(dims) < 0.5
            else:
                arrays[tensor.name] = rng.integers(0, 10, dims).astype(dtype)
        requests.append(arrays)
    return requests


def local_outputs(
    source: Path, signature: OnnxSignature, requests: Sequence[Mapping[str, Any]]
) -> list[list[Any]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    names = [t.name for t in signature.outputs]
    return [list(session.run(names, dict(arrays))) for arrays in requests]


def _agreement(
    served: npt.NDArray[Any], local: npt.NDArray[Any], bar: Tolerance | None
) -> tuple[float, bool]:
    """The largest difference, and whether every value is within the bar."""
    if served.shape != local.shape:
        return float("inf"), False
    reference = local.astype(np.float64)
    diff = np.abs(served.astype(np.float64) - reference)
    largest = float(diff.max()) if diff.size else 0.0
    if bar is None:
        return largest, largest == 0.0
    return largest, bool(np.all(diff <= bar.atol + bar.rtol * np.abs(reference)))


async def check_served(
    api: ServerAPI,
    name: str,
    source: Path,
    signature: OnnxSignature,
    *,
    max_batch_size: int,
    bar: Tolerance | None,
) -> list[Agreement]:
    """Each output's agreement over :data:`REQUESTS` requests sent one at a time (no batching
    across them, so each runs as the local session runs it)."""
    requests = sample_inputs(signature, max_batch_size)
    expected = local_outputs(source, signature, requests)
    names = [t.name for t in signature.outputs]
    worst = dict.fromkeys(names, 0.0)
    ok = dict.fromkeys(names, True)
    for arrays, local in zip(requests, expected, strict=True):
        served = await api.infer(name, arrays, names)
        for output, value in zip(names, local, strict=True):
            largest, within = _agreement(served[output], np.asarray(value), bar)
            worst[output] = max(worst[output], largest)
            ok[output] = ok[output] and within
    return [Agreement(output, worst[output], ok[output], bar) for output in names]
