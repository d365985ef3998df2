"""TOTAL = SCALE * sum of the TOKENS where MASK is set; KEPT = TOKENS with the masked ones zeroed."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            tokens = pb_utils.get_input_tensor_by_name(request, "TOKENS").as_numpy()
            scale = pb_utils.get_input_tensor_by_name(request, "SCALE").as_numpy().astype(np.float32)
            mask = pb_utils.get_input_tensor_by_name(request, "MASK").as_numpy()
            if mask.shape != tokens.shape:
                error = pb_utils.TritonError(f"MASK {list(mask.shape)} must match TOKENS {list(tokens.shape)}")
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            kept = np.where(mask, tokens, 0).astype(np.int32)
            total = scale * kept.sum(axis=1, keepdims=True).astype(np.float32)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("TOTAL", total), pb_utils.Tensor("KEPT", kept)]
                )
            )
        return responses
