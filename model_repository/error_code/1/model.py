"""Answers CODE 0; fails CODE 1-6 with that Triton error code and a fixed message; raises for a
negative CODE (an exception in execute: Triton counts the request as failed, not served)."""

import triton_python_backend_utils as pb_utils

_CODES = {
    1: "INTERNAL",
    2: "NOT_FOUND",
    3: "INVALID_ARG",
    4: "UNAVAILABLE",
    5: "UNSUPPORTED",
    6: "ALREADY_EXISTS",
}


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            code_tensor = pb_utils.get_input_tensor_by_name(request, "CODE")
            code = int(code_tensor.as_numpy().reshape(-1)[0])
            if code < 0:
                raise RuntimeError(f"model raised on request (CODE {code})")
            if code == 0:
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[pb_utils.Tensor("OUTPUT0", code_tensor.as_numpy())]
                    )
                )
                continue
            name = _CODES.get(code, "UNKNOWN")
            error = pb_utils.TritonError(
                f"failed on request with {name}", getattr(pb_utils.TritonError, name)
            )
            responses.append(pb_utils.InferenceResponse(error=error))
        return responses
