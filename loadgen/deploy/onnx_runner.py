"""The Python-backend ``model.py`` that ``loadgen model add`` writes beside an ONNX file.

This file is copied, not imported by loadgen: it runs inside Triton's Python backend stub, which
provides ``triton_python_backend_utils``. It serves any graph whose inputs and outputs its config
names (the one ``model add`` wrote from the graph), with onnxruntime on the CPU, the same runtime a
local check uses, so FP32 answers match bit for bit. Parameter ``INTRA_OP_THREADS`` (default 1):
instances, not threads, are what a tune varies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = config.get("parameters", {})
        threads = int(params.get("INTRA_OP_THREADS", {}).get("string_value", "1"))
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def _run(self, feeds: dict[str, Any]) -> list[Any]:
        return list(self.session.run(self.outputs, feeds))

    def execute(self, requests: list[Any]) -> list[Any]:
        feeds = [
            {name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs}
            for r in requests
        ]
        if not self.batched or len(requests) == 1:
            results = [self._run(feed) for feed in feeds]
        else:  # the dynamic batcher's requests run as one batch, split back by their sizes
            sizes = [len(feed[self.inputs[0]]) for feed in feeds]
            joined = self._run({n: np.concatenate([f[n] for f in feeds]) for n in self.inputs})
            cuts = np.cumsum(sizes)[:-1]
            results = [list(parts) for parts in zip(*(np.split(out, cuts) for out in joined), strict=True)]
        return [
            pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(n, v) for n, v in zip(self.outputs, values, strict=True)]
            )
            for values in results
        ]
