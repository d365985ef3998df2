"""OUTPUT0 = INPUT0, counting the values it has seen and gauging their last mean."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        labels = {"model": args["model_name"]}
        # the families must outlive their metrics: keep them on self
        self.seen_family = pb_utils.MetricFamily(
            name="custom_values_seen_total",
            description="Input values the model has seen",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.mean_family = pb_utils.MetricFamily(
            name="custom_last_mean",
            description="Mean of the last request's input",
            kind=pb_utils.MetricFamily.GAUGE,
        )
        self.seen = self.seen_family.Metric(labels=labels)
        self.mean = self.mean_family.Metric(labels=labels)

    def execute(self, requests):
        responses = []
        for request in requests:
            value = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            self.seen.increment(float(value.size))
            self.mean.set(float(np.mean(value)))
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT0", value)]))
        return responses
