"""Returns its input after SERVICE_MS (config parameter): one request at a time, so the queue in
front of it, ordered by priority level, decides who waits."""

import json
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        self.service_s = float(params.get("SERVICE_MS", {}).get("string_value", "10")) / 1000.0

    def execute(self, requests):
        time.sleep(self.service_s * len(requests))
        return [
            pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())]
            )
            for r in requests
        ]
