"""The deployer's first half (issue 21): an ONNX graph's signature in Triton's words, and the
config.pbtxt written from it and the options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from loadgen.deploy.config_text import DeployOptions, config_pbtxt
from loadgen.deploy.onnx_signature import OnnxSignature, TensorSpec, read_signature
from loadgen.errors import ConfigError


def _graph(path: Path, batch: str | int = "batch") -> Path:
    """X [batch, 4] (FP32) x W (a weight, also listed as an input) -> Y [batch, 2], and a count."""
    weight = numpy_helper.from_array(np.ones((4, 2), dtype=np.float32), name="W")
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["Y"]),
        helper.make_node("Shape", ["X"], ["N"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("X", TensorProto.FLOAT, [batch, 4]),
            helper.make_tensor_value_info("W", TensorProto.FLOAT, [4, 2]),
        ],
        [
            helper.make_tensor_value_info("Y", TensorProto.FLOAT, [batch, 2]),
            helper.make_tensor_value_info("N", TensorProto.INT64, [2]),
        ],
        [weight],
    )
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_the_signature_leaves_weights_out_and_marks_open_dimensions(tmp_path: Path) -> None:
    signature = read_signature(_graph(tmp_path / "m.onnx"))
    assert signature.inputs == (TensorSpec("X", "TYPE_FP32", (-1, 4)),)
    assert signature.outputs == (TensorSpec("Y", "TYPE_FP32", (-1, 2)), TensorSpec("N", "TYPE_INT64", (2,)))
    assert not signature.batchable  # N's first dimension is fixed: Triton cannot batch it


def test_a_batchable_graph_gets_batching_and_its_dims_without_the_batch(tmp_path: Path) -> None:
    signature = OnnxSignature(
        (TensorSpec("INPUT__0", "TYPE_FP32", (-1, 3, 224, 224)),),
        (TensorSpec("OUTPUT__0", "TYPE_FP32", (-1, 1000)),),
    )
    options = DeployOptions(
        "rnxt", "onnxruntime", max_batch_size=64, queue_delay_us=100, instances=2, gpu=True
    )
    text = config_pbtxt(signature, options)
    assert text.startswith('name: "rnxt"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 64\n')
    assert "dims: [ 3, 224, 224 ]" in text and "dims: [ 1000 ]" in text
    assert "max_queue_delay_microseconds: 100" in text and "count: 2\n    kind: KIND_GPU" in text
    plain = config_pbtxt(signature, DeployOptions("rnxt"))
    assert (
        'backend: "python"' in plain and "max_batch_size: 0" in plain and "dims: [ -1, 3, 224, 224 ]" in plain
    )
    assert "dynamic_batching" not in plain and "kind: KIND_CPU" in plain


def test_what_cannot_work_is_refused_in_one_line(tmp_path: Path) -> None:
    fixed = read_signature(_graph(tmp_path / "fixed.onnx", batch=8))
    with pytest.raises(ConfigError, match="'X' has a fixed first dimension \\(8\\)"):
        config_pbtxt(fixed, DeployOptions("m", max_batch_size=8))
    with pytest.raises(ConfigError, match="dynamic batching needs a max batch size above 0"):
        DeployOptions("m", queue_delay_us=100)
    with pytest.raises(ConfigError, match="backend 'tensorflow'"):
        DeployOptions("m", backend="tensorflow")
    (tmp_path / "junk.onnx").write_bytes(b"\x00not a model")
    with pytest.raises(ConfigError, match="junk.onnx is not an ONNX model"):
        read_signature(tmp_path / "junk.onnx")
    with pytest.raises(ConfigError, match="no such ONNX file"):
        read_signature(tmp_path / "missing.onnx")
