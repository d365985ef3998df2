"""Fixed service time model: a single-server queue with service time S (SERVICE_TIME_MS).

Closed-loop theory needs the *instance* to have service time S: one completion
every S while requests wait, so throughput is 1/S and latency C x S. A Python
backend instance also spends time outside ``execute`` (hand-off between Triton
and this process: about 1 ms on a 2-core VM), which would add to S. So the
instance paces its completions instead of sleeping a fixed S inside ``execute``:

    end = previous_end + S + slack   if this execution starts less than S / 2 after the last one ended
    end = start + S                  otherwise (the instance was idle)

While busy (the next request is handed over right after the previous one ends,
or after a client's quick round trip) completions are exactly S + slack apart:
the hand-off is absorbed, not added. A request reaching an idle instance is held
for the full S. The slack (PACING_SLACK_US, default 100 us = 1% of S) keeps a lone
closed-loop client's latency at or above S: its next request can only arrive after
its previous answer.
The last stretch before the deadline is spun, not slept, for precision.
"""

import json
import time

import triton_python_backend_utils as pb_utils

_SPIN_NS = 300_000  # sleep until 0.3 ms before the deadline, then spin


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        self.service_ns = int(float(params["SERVICE_TIME_MS"]["string_value"]) * 1e6)
        if self.service_ns <= 0:
            raise pb_utils.TritonModelException("SERVICE_TIME_MS must be > 0")
        slack = params.get("PACING_SLACK_US", {}).get("string_value", "100")
        self.period_ns = self.service_ns + int(float(slack) * 1e3)
        self.busy_gap_ns = self.service_ns // 2
        self.last_end = 0

    def execute(self, requests):
        start = time.perf_counter_ns()
        if start - self.last_end < self.busy_gap_ns:
            deadline = self.last_end + self.period_ns
        else:
            deadline = start + self.service_ns
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
        self.last_end = deadline
        return responses
