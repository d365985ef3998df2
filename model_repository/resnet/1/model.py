"""Runs the ONNX CNN beside this file with onnxruntime (CPU).

The ONNX file is built from a fixed seed by ../build_onnx.py; if set-up has not
built it yet, the first instance to load builds it.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def _ensure_onnx(model_dir: Path, version: str) -> Path:
    path = model_dir / version / "model.onnx"
    if not path.exists():
        spec = importlib.util.spec_from_file_location("build_onnx", model_dir / "build_onnx.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.build(path)
    return path


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        threads = int(config.get("parameters", {}).get("INTRA_OP_THREADS", {}).get("string_value", "1"))
        path = _ensure_onnx(Path(args["model_repository"]), args["model_version"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        batches = [pb_utils.get_input_tensor_by_name(r, "INPUT__0").as_numpy() for r in requests]
        sizes = [len(b) for b in batches]
        probs = self.session.run(["OUTPUT__0"], {"INPUT__0": np.concatenate(batches)})[0]
        responses = []
        start = 0
        for size in sizes:
            out = pb_utils.Tensor("OUTPUT__0", probs[start : start + size])
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
            start += size
        return responses
