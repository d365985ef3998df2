"""``--fp16``: an ONNX graph's weights and arithmetic in half precision, its inputs and outputs not.

onnxruntime ships the converter (``onnxruntime.transformers.float16``, the maintained copy of
onnxconverter-common's): weights become FP16, an operator without an FP16 kernel stays FP32 behind
casts. ``keep_io_types`` keeps the graph's inputs and outputs FP32, so the FP32 and FP16 models of
one network take the same requests: a sweep's input data, ``--validate`` references and side-by-side
tables apply to both unchanged.
"""

from __future__ import annotations

from pathlib import Path

from loadgen.errors import ConfigError


def write_fp16(source: Path, target: Path) -> None:
    """``source`` converted to FP16 weights, saved at ``target``; one line if the converter refuses."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(source))
    try:
        half = convert_float_to_float16(model, keep_io_types=True)
    except Exception as exc:  # the converter raises bare ValueErrors and asserts on graphs it cannot do
        raise ConfigError(f"{source}: cannot convert to FP16 ({type(exc).__name__}: {exc})") from None
    onnx.save(half, str(target))
