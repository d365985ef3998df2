"""Drifting model: exact when alone, wrong when several requests share an execution.

See config.pbtxt. The busy path sleeps 1 ms so that, under concurrent load, the
dynamic batcher keeps gathering several requests per execution.
"""

import time

import numpy as np
import triton_python_backend_utils as pb_utils

DRIFT = 1e-3


class TritonPythonModel:
    def execute(self, requests):
        outputs = [2.0 * pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy() for r in requests]
        if len(requests) > 1:
            time.sleep(0.001)
            outputs = [(o * (1.0 + DRIFT)).astype(np.float32) for o in outputs]
            outputs[-1], outputs[-2] = 2.0 * pb_utils.get_input_tensor_by_name(
                requests[-2], "INPUT0"
            ).as_numpy(), 2.0 * pb_utils.get_input_tensor_by_name(requests[-1], "INPUT0").as_numpy()
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT0", o.astype(np.float32))])
            for o in outputs
        ]
