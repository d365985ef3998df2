"""Fixed service time model: every execution lasts SERVICE_TIME_MS (config parameter).

The deadline is computed from the start of the execution, and the last stretch
is spun rather than slept, so the service time holds to a few microseconds even
though the OS sleep may overshoot.
"""

import json
import time

import triton_python_backend_utils as pb_utils

_SPIN_NS = 300_000  # sleep until 0.3 ms before the deadline, then spin


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        value = config["parameters"]["SERVICE_TIME_MS"]["string_value"]
        self.service_ns = int(float(value) * 1e6)
        if self.service_ns <= 0:
            raise pb_utils.TritonModelException("SERVICE_TIME_MS must be > 0")

    def execute(self, requests):
        deadline = time.perf_counter_ns() + self.service_ns
        responses = []
        for request in requests:
            tensor = pb_utils.get_input_tensor_by_name(request, "INPUT0")
            out = pb_utils.Tensor("OUTPUT0", tensor.as_numpy())
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        remaining = deadline - time.perf_counter_ns()
        if remaining > _SPIN_NS:
            time.sleep((remaining - _SPIN_NS) / 1e9)
        while time.perf_counter_ns() < deadline:
            pass
        return responses
