"""Build the `resnet` model's ONNX file: a small ResNet-style CNN with seeded random weights.

No weights are downloaded: the network is assembled node by node with `onnx.helper`
and its weights drawn from a fixed seed, so every machine builds the same bytes.
Shape: FP32 [N, 3, 224, 224] -> FP32 [N, 1000] (softmax probabilities).

    python model_repository/resnet/build_onnx.py [OUT]   # default: 1/model.onnx beside this file
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

SEED = 20261128
WIDTHS = (16, 32, 64, 128)  # channels of the four stages (ResNet-18 uses 64..512)
NUM_CLASSES = 1000


def build(out: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(SEED)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    counter = iter(range(1_000_000))

    def weight(shape: tuple[int, ...], fan_in: int) -> str:
        name = f"w{next(counter)}"
        value = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape).astype(np.float32)
        inits.append(numpy_helper.from_array(value, name))
        return name

    def conv(x: str, cin: int, cout: int, k: int, stride: int, relu: bool) -> str:
        w = weight((cout, cin, k, k), cin * k * k)
        b = weight((cout,), cout)  # batch-norm folded into a bias
        y = f"t{next(counter)}"
        pad = k // 2
        nodes.append(
            helper.make_node(
                "Conv", [x, w, b], [y], kernel_shape=[k, k], strides=[stride, stride],
                pads=[pad, pad, pad, pad],
            )
        )
        if not relu:
            return y
        r = f"t{next(counter)}"
        nodes.append(helper.make_node("Relu", [y], [r]))
        return r

    def block(x: str, cin: int, cout: int, stride: int) -> str:
        h = conv(x, cin, cout, 3, stride, relu=True)
        h = conv(h, cout, cout, 3, 1, relu=False)
        shortcut = x if (stride == 1 and cin == cout) else conv(x, cin, cout, 1, stride, relu=False)
        s = f"t{next(counter)}"
        nodes.append(helper.make_node("Add", [h, shortcut], [s]))
        r = f"t{next(counter)}"
        nodes.append(helper.make_node("Relu", [s], [r]))
        return r

    x = conv("INPUT__0", 3, WIDTHS[0], 7, 2, relu=True)
    pooled = f"t{next(counter)}"
    nodes.append(
        helper.make_node("MaxPool", [x], [pooled], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    )
    x, cin = pooled, WIDTHS[0]
    for i, width in enumerate(WIDTHS):
        x = block(x, cin, width, 1 if i == 0 else 2)
        x = block(x, width, width, 1)
        cin = width
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], axis=1))
    fc_w = weight((cin, NUM_CLASSES), cin)
    fc_b = weight((NUM_CLASSES,), NUM_CLASSES)
    nodes.append(helper.make_node("Gemm", ["flat", fc_w, fc_b], ["logits"]))
    nodes.append(helper.make_node("Softmax", ["logits"], ["OUTPUT__0"], axis=1))

    graph = helper.make_graph(
        nodes,
        "resnet_small",
        [helper.make_tensor_value_info("INPUT__0", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("OUTPUT__0", TensorProto.FLOAT, ["N", NUM_CLASSES])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="loadgen")
    model.ir_version = 8
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(model.SerializeToString())
    tmp.replace(out)  # atomic: two server instances may build at once
    return out


def default_path() -> Path:
    return Path(__file__).resolve().parent / "1" / "model.onnx"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else default_path()
    print(build(target))
