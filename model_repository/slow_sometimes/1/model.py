"""Echoes its input after BASE_MS, except every SLOW_EVERY-th execution, which takes SLOW_FACTOR x
longer: a tail whose cause (compute, not queueing) is known in advance."""

import json
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        params = {k: float(v["string_value"]) for k, v in json.loads(args["model_config"])["parameters"].items()}
        self.base_s = params["BASE_MS"] / 1000.0
        self.every = int(params["SLOW_EVERY"])
        self.factor = params["SLOW_FACTOR"]
        self.executions = 0

    def execute(self, requests):
        self.executions += 1
        slow = self.executions % self.every == 0
        time.sleep(self.base_s * (self.factor if slow else 1.0))
        responses = []
        for request in requests:
            tensor = pb_utils.get_input_tensor_by_name(request, "INPUT0")
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT0", tensor.as_numpy())]))
        return responses
