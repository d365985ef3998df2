"""Running sums per sequence (see config.pbtxt): START resets the sequence's sum, END forgets it.

SERVICE_MS (config parameter) is the time each execution takes. CROSS_STATE (config parameter,
default off) makes a faulty stateful model for ``--validate``: state is kept per correlation id
modulo 2, so two sequences running at once whose ids share that remainder add into one sum, as a
server that crosses state between sequences would. Alone (one sequence at a time) it is right.
"""

import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils


def _flag(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return bool(tensor.as_numpy().flat[0]) if tensor is not None else False


class TritonPythonModel:
    def initialize(self, args):
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        self.service_s = float(params.get("SERVICE_MS", "1")) / 1000.0
        self.cross = params.get("CROSS_STATE", "off") == "on"
        self.sums = {}

    def _key(self, request):
        corrid = pb_utils.get_input_tensor_by_name(request, "CORRID").as_numpy().flat[0]
        if isinstance(corrid, bytes):
            corrid = corrid.decode()
        return int(corrid) % 2 if self.cross else corrid

    def execute(self, requests):
        time.sleep(self.service_s)
        responses = []
        for request in requests:
            value = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            key = self._key(request)
            if _flag(request, "START"):
                self.sums[key] = 0
            total = self.sums.get(key, 0) + int(value.sum())
            self.sums[key] = total
            if _flag(request, "END"):
                self.sums.pop(key, None)
            out = np.full(value.shape, total, dtype=np.int32)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("SUM", out)]))
        return responses
