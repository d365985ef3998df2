"""What an ONNX file takes and returns, in Triton's words: each input's and output's name,
datatype and dims, and whether the first dimension is a batch Triton may fill (issue 21).

Read from the graph alone (``load_external_data=False``: large weights stay on disk). A graph
input that an initializer also names is a weight with a default, not an input a client sends.
A dimension given by name (``dim_param``, e.g. ``batch``) or not at all is dynamic: -1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen.errors import ConfigError

TRITON_TYPES = {
    1: "TYPE_FP32",
    2: "TYPE_UINT8",
    3: "TYPE_INT8",
    4: "TYPE_UINT16",
    5: "TYPE_INT16",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    8: "TYPE_STRING",
    9: "TYPE_BOOL",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
    12: "TYPE_UINT32",
    13: "TYPE_UINT64",
    16: "TYPE_BF16",
}
"""ONNX ``TensorProto.DataType`` -> Triton's datatype (Triton's ONNX Runtime backend's table)."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    dims: tuple[int, ...]
    """Every dimension, the first included; -1 where the graph leaves it open."""

    def served_dims(self, batched: bool) -> tuple[int, ...]:
        """The dims a config.pbtxt gives: without the batch dimension when Triton batches."""
        return self.dims[1:] if batched else self.dims


@dataclass(frozen=True)
class OnnxSignature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def batchable(self) -> bool:
        """Every input's and output's first dimension is open: Triton may batch requests."""
        tensors = (*self.inputs, *self.outputs)
        return bool(tensors) and all(t.dims and t.dims[0] == -1 for t in tensors)


def _tensor(value: Any, where: str) -> TensorSpec:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        raise ConfigError(f"{where} {value.name!r} is a {kind}, not a tensor: Triton serves tensors only")
    tensor = value.type.tensor_type
    datatype = TRITON_TYPES.get(tensor.elem_type)
    if datatype is None:
        raise ConfigError(
            f"{where} {value.name!r} has ONNX element type {tensor.elem_type}, which Triton lacks"
        )
    dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor.shape.dim)
    return TensorSpec(value.name, datatype, dims)


def read_signature(path: Path) -> OnnxSignature:
    """The graph's inputs (weights left out) and outputs; one line for a file that is not ONNX."""
    import onnx

    if not path.is_file():
        raise ConfigError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # a protobuf decode error: not an ONNX file
        raise ConfigError(f"{path} is not an ONNX model ({type(exc).__name__})") from None
    graph = model.graph
    weights = {init.name for init in graph.initializer}
    inputs = tuple(_tensor(v, "input") for v in graph.input if v.name not in weights)
    outputs = tuple(_tensor(v, "output") for v in graph.output)
    if not inputs or not outputs:
        raise ConfigError(f"{path}: the graph has no {'inputs' if not inputs else 'outputs'} to serve")
    return OnnxSignature(inputs, outputs)
