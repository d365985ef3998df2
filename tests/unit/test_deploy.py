"""The deployer's first half (issue 21): an ONNX graph's signature in Triton's words, and the
config.pbtxt written from it and the options."""

from __future__ import annotations

import sys
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


def _dense(path: Path) -> Path:
    """X [batch, 8] FP32 -> Relu(X W + b) [batch, 4]: a batchable graph with weights to halve."""
    rng = np.random.default_rng(7)
    inits = [
        numpy_helper.from_array(rng.normal(size=(8, 4)).astype(np.float32), name="W"),
        numpy_helper.from_array(rng.normal(size=(4,)).astype(np.float32), name="B"),
    ]
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["H"]),
        helper.make_node("Add", ["H", "B"], ["S"]),
        helper.make_node("Relu", ["S"], ["Y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "dense",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 4])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_fp16_halves_the_weights_keeps_fp32_inputs_and_answers_within_fp16_tolerance(tmp_path: Path) -> None:
    from loadgen.deploy.precision import write_fp16
    from loadgen.deploy.served_check import local_outputs, sample_inputs
    from loadgen.validation import DEFAULT_TOLERANCES

    source = _dense(tmp_path / "dense.onnx")
    half = tmp_path / "half.onnx"
    write_fp16(source, half)
    weights = {init.name: init.data_type for init in onnx.load(str(half)).graph.initializer}
    assert weights["W"] == TensorProto.FLOAT16 and weights["B"] == TensorProto.FLOAT16
    signature = read_signature(source)
    assert read_signature(half) == signature  # the same requests serve both
    requests = sample_inputs(signature, max_batch_size=16)
    assert [r["X"].shape for r in requests] == [(1, 8), (2, 8), (3, 8), (4, 8)]
    assert [r["X"].shape for r in sample_inputs(signature, max_batch_size=2)] == [
        (1, 8),
        (2, 8),
        (2, 8),
        (2, 8),
    ]
    exact, approx = local_outputs(source, signature, requests), local_outputs(half, signature, requests)
    for a, b in zip(exact, approx, strict=True):
        assert b[0].dtype == np.float32
        bar = DEFAULT_TOLERANCES["FP16"]  # what --validate holds an FP16 model to
        np.testing.assert_allclose(b[0], a[0], rtol=bar.rtol, atol=bar.atol)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(exact, approx, strict=True))  # really FP16


def test_model_add_writes_the_entry_whole_and_refuses_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loadgen.deploy.repository_entry import add_model

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on a machine without it: import fails

    source = _dense(tmp_path / "dense.onnx")
    repo = tmp_path / "repo"
    repo.mkdir()
    options = DeployOptions("dense", max_batch_size=16, queue_delay_us=50, instances=2)
    deployed = add_model(source, repo, options)
    assert sorted(str(f.relative_to(repo)) for f in deployed.files) == [
        "dense/1/model.onnx",
        "dense/1/model.py",
        "dense/config.pbtxt",
    ]
    assert (repo / "dense" / "1" / "model.onnx").read_bytes() == source.read_bytes()
    assert (repo / "dense" / "config.pbtxt").read_text() == deployed.config_text
    assert oct((repo / "dense").stat().st_mode & 0o777) == "0o755"
    with pytest.raises(ConfigError, match="exists: give --replace"):
        add_model(source, repo, options)
    with pytest.raises(ConfigError, match="needs the tensorrt package"):
        add_model(source, repo, DeployOptions("plan", backend="tensorrt", max_batch_size=4), replace=True)
    with pytest.raises(ConfigError, match="fixed first dimension"):
        add_model(_graph(tmp_path / "fixed.onnx", batch=2), repo, DeployOptions("fixed", max_batch_size=4))
    onnxrt = add_model(source, repo, DeployOptions("dense", backend="onnxruntime"), fp16=True, replace=True)
    assert [f.name for f in onnxrt.files] == ["model.onnx", "config.pbtxt"]
    assert not (repo / "dense" / "1" / "model.py").exists()  # replaced whole, not merged
    assert sorted(p.name for p in repo.iterdir()) == ["dense"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".loadgen-")]  # no staging left
