"""COUNT responses (INDEX 0..COUNT-1), or FAIL_AFTER good ones then an error with the final flag.

Response i goes out at t0 + FIRST_TOKEN_MS + i * TOKEN_MS (t0: when execute saw the request),
on absolute deadlines, from a thread of the request's own; the error goes out where response
FAIL_AFTER would have. FAIL_AFTER < 0 or >= COUNT: no error, the final flag on the last response.
"""

import json
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def _sleep_until(deadline_ns):
    remaining = deadline_ns - time.perf_counter_ns()
    if remaining > 0:
        time.sleep(remaining / 1e9)


def _scalar(request, name, default):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return default if tensor is None else int(tensor.as_numpy().reshape(-1)[0])


class TritonPythonModel:
    def initialize(self, args):
        params = {
            k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()
        }
        self.count = int(params.get("COUNT", "8"))
        self.first_ns = int(float(params.get("FIRST_TOKEN_MS", "10")) * 1e6)
        self.token_ns = int(float(params.get("TOKEN_MS", "2")) * 1e6)

    def execute(self, requests):
        start = time.perf_counter_ns()
        for request in requests:
            sender = request.get_response_sender()
            count = _scalar(request, "COUNT", self.count)
            fail_after = _scalar(request, "FAIL_AFTER", -1)
            if count < 0:
                error = pb_utils.TritonError(
                    f"COUNT must be >= 0, not {count}", pb_utils.TritonError.INVALID_ARG
                )
                sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)
                continue
            if fail_after >= count:
                fail_after = -1
            threading.Thread(
                target=self._stream, args=(sender, start, count, fail_after), daemon=True
            ).start()
        return None

    def _stream(self, sender, start, count, fail_after):
        try:
            for index in range(count):
                _sleep_until(start + self.first_ns + index * self.token_ns)
                if index == fail_after:
                    error = pb_utils.TritonError(
                        f"failed after {fail_after} responses", pb_utils.TritonError.INTERNAL
                    )
                    sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)
                    return
                out = pb_utils.Tensor("INDEX", np.array([index], dtype=np.int32))
                sender.send(
                    pb_utils.InferenceResponse(output_tensors=[out]), flags=FINAL if index == count - 1 else 0
                )
            if count == 0:
                _sleep_until(start + self.first_ns)
                sender.send(flags=FINAL)
        except Exception as exc:
            pb_utils.Logger.log_error(f"stream_fails_midway: stream failed: {exc!r}")
