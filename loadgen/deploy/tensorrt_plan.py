"""``--backend tensorrt``: a TensorRT plan built from the ONNX file, where the package is installed.

TensorRT builds for the GPU it runs on, so the plan is built on the machine that serves it; the
``tensorrt`` package exists only for machines with an NVIDIA GPU. With a max batch size, one
optimisation profile covers batches 1..max (tuned for half of it), the range Triton's batcher sends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadgen.deploy.onnx_signature import OnnxSignature
from loadgen.errors import ConfigError

MISSING = (
    "--backend tensorrt needs the tensorrt package (NVIDIA GPU machines only: pip install 'loadgen[gpu]')"
)


def _tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise ConfigError(MISSING) from None
    return tensorrt


def check_available() -> None:
    """Refused before anything is written where the package is missing."""
    _tensorrt()


def build_plan(source: Path, target: Path, signature: OnnxSignature, max_batch_size: int, fp16: bool) -> None:
    trt = _tensorrt()
    for tensor in signature.inputs:
        if -1 in tensor.dims[1 if max_batch_size else 0 :]:
            raise ConfigError(
                f"input {tensor.name!r} has open dims {list(tensor.dims)}: a TensorRT plan needs every "
                "dimension but the batch fixed"
            )
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(source.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConfigError(f"{source}: TensorRT cannot parse it: {errors}")
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if max_batch_size:
        profile = builder.create_optimization_profile()
        for tensor in signature.inputs:
            rest = tensor.dims[1:]
            profile.set_shape(
                tensor.name, (1, *rest), (max(1, max_batch_size // 2), *rest), (max_batch_size, *rest)
            )
        config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ConfigError(f"{source}: TensorRT could not build a plan (its log above says why)")
    target.write_bytes(bytes(plan))
