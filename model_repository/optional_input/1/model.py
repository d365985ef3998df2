"""OUTPUT0 = INPUT0 + BIAS, where a request without the optional BIAS adds nothing."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            value = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            bias = pb_utils.get_input_tensor_by_name(request, "BIAS")
            total = value if bias is None else value + bias.as_numpy()
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("OUTPUT0", total.astype(np.float32))]
                )
            )
        return responses
