"""COUNT responses (INDEX 0..COUNT-1) on a thread of the request's own; COUNT 0: only the final flag.

Response i goes out at t0 + FIRST_TOKEN_MS + i * TOKEN_MS (t0: when execute saw the request),
on absolute deadlines. The final flag rides on the last response unless EMPTY_FINAL (or the
request parameter "empty_final") asks for an empty final response; COUNT 0 can only end with one.
"""

import json
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def _flag(value, what):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"{what} must be true or false, not {value!r}")


def _sleep_until(deadline_ns):
    remaining = deadline_ns - time.perf_counter_ns()
    if remaining > 0:
        time.sleep(remaining / 1e9)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.first_ns = int(float(params.get("FIRST_TOKEN_MS", "10")) * 1e6)
        self.token_ns = int(float(params.get("TOKEN_MS", "2")) * 1e6)
        self.empty_final = _flag(params.get("EMPTY_FINAL", "false"), "EMPTY_FINAL")

    def execute(self, requests):
        start = time.perf_counter_ns()
        for request in requests:
            sender = request.get_response_sender()
            count = int(pb_utils.get_input_tensor_by_name(request, "COUNT").as_numpy().reshape(-1)[0])
            try:
                params = json.loads(request.parameters() or "{}")
                empty_final = _flag(params.get("empty_final", self.empty_final), "empty_final")
                if count < 0:
                    raise ValueError(f"COUNT must be >= 0, not {count}")
            except ValueError as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)
                continue
            threading.Thread(
                target=self._stream, args=(sender, start, count, empty_final), daemon=True
            ).start()
        return None

    def _stream(self, sender, start, count, empty_final):
        try:
            for index in range(count):
                _sleep_until(start + self.first_ns + index * self.token_ns)
                out = pb_utils.Tensor("INDEX", np.array([index], dtype=np.int32))
                final = index == count - 1 and not empty_final
                sender.send(pb_utils.InferenceResponse(output_tensors=[out]), flags=FINAL if final else 0)
            if count == 0 or empty_final:
                _sleep_until(start + self.first_ns)
                sender.send(flags=FINAL)
        except Exception as exc:
            pb_utils.Logger.log_error(f"stream_sometimes_empty: stream failed: {exc!r}")
