"""A model's ``config.pbtxt`` from its ONNX signature and the deploy options (issue 21).

Three backends: ``onnxruntime`` (Triton's ONNX Runtime backend, what a GPU Triton image serves
as-is), ``python`` (the Python backend running onnxruntime: the only one the embedded CPU
server has, the way ``model_repository/resnet`` is served) and ``tensorrt`` (a plan built from
the graph, on the GPU).
"""

from __future__ import annotations

from dataclasses import dataclass

from loadgen.deploy.onnx_signature import OnnxSignature, TensorSpec
from loadgen.errors import ConfigError

BACKENDS = ("python", "onnxruntime", "tensorrt")
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}
"""The ``platform`` line of the backends that have one (the Python backend names a ``backend``)."""
MODEL_FILES = {"python": "model.onnx", "onnxruntime": "model.onnx", "tensorrt": "model.plan"}


@dataclass(frozen=True)
class DeployOptions:
    name: str
    backend: str = "python"
    max_batch_size: int = 0
    """0: Triton does not batch (the ONNX graph's first dimension is then a plain dimension)."""
    queue_delay_us: int | None = None
    """Dynamic batching with this delay; None: off."""
    instances: int = 1
    gpu: bool = False
    """Instances on the GPU (``KIND_GPU``), else on the CPU."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend {self.backend!r}: expected one of {', '.join(BACKENDS)}")
        if self.max_batch_size < 0 or self.instances < 1:
            raise ConfigError("max batch size must be >= 0 and instances >= 1")
        if self.queue_delay_us is not None and (self.queue_delay_us < 0 or self.max_batch_size == 0):
            raise ConfigError("dynamic batching needs a max batch size above 0 and a delay >= 0")


def _tensor_text(tensor: TensorSpec, batched: bool) -> str:
    dims = ", ".join(str(d) for d in tensor.served_dims(batched))
    return f'  {{\n    name: "{tensor.name}"\n    data_type: {tensor.datatype}\n    dims: [ {dims} ]\n  }}'


def config_pbtxt(signature: OnnxSignature, options: DeployOptions) -> str:
    """The config text; refused in one line where the graph cannot do what the options ask."""
    batched = options.max_batch_size > 0
    if batched and not signature.batchable:
        fixed = next(t for t in (*signature.inputs, *signature.outputs) if not t.dims or t.dims[0] != -1)
        raise ConfigError(
            f"{fixed.name!r} has a fixed first dimension ({fixed.dims[0] if fixed.dims else 'none'}): "
            "Triton cannot batch this graph; give a max batch size of 0"
        )
    platform = PLATFORMS.get(options.backend)
    platform_line = f'platform: "{platform}"' if platform else f'backend: "{options.backend}"'
    lines = [
        f'name: "{options.name}"',
        platform_line,
        f"max_batch_size: {options.max_batch_size}",
        "input [\n" + ",\n".join(_tensor_text(t, batched) for t in signature.inputs) + "\n]",
        "output [\n" + ",\n".join(_tensor_text(t, batched) for t in signature.outputs) + "\n]",
    ]
    if options.queue_delay_us is not None:
        lines.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {options.queue_delay_us}\n}}")
    kind = "KIND_GPU" if options.gpu or options.backend == "tensorrt" else "KIND_CPU"
    lines.append(f"instance_group [\n  {{\n    count: {options.instances}\n    kind: {kind}\n  }}\n]")
    return "\n".join(lines) + "\n"
