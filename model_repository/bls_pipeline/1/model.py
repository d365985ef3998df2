"""BLS: each request becomes a request to `preprocess`, whose output becomes a request to `resnet`.

The child requests carry the parent's trace (``trace=request.trace()``), so Triton's per-request
traces link them to the request that made them."""

import triton_python_backend_utils as pb_utils


def _call(request, model, outputs, tensors):
    child = pb_utils.InferenceRequest(
        model_name=model, requested_output_names=outputs, inputs=tensors, trace=request.trace()
    )
    response = child.exec()
    if response.has_error():
        raise pb_utils.TritonModelException(f"{model}: {response.error().message()}")
    return response


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            image = pb_utils.get_input_tensor_by_name(request, "IMAGE")
            try:
                pre = _call(request, "preprocess", ["PIXELS"], [image])
                pixels = pb_utils.get_output_tensor_by_name(pre, "PIXELS")
                scored = _call(request, "resnet", ["OUTPUT__0"], [pb_utils.Tensor("INPUT__0", pixels.as_numpy())])
            except pb_utils.TritonModelException as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
                continue
            scores = pb_utils.get_output_tensor_by_name(scored, "OUTPUT__0").as_numpy()
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("SCORES", scores)]))
        return responses
