"""Input tensors for a model, built once per run from its metadata and the user's data.

Sources, each a module: ``random``/``zero`` (``generated``); perf_analyzer's JSON
input-data file (``json_data``, its values decoded by ``values``); perf_analyzer's
directory of raw files (``directory``); ``.npy``/``.npz`` files (``numpy_data``).
Each data entry is one sample (a batch-1 request), an optional input left out where
the entry leaves it out; ``batches`` stacks B consecutive samples into a request of batch
size B. Every tensor is serialized once by the transport and reused. Data that does not
fit the model is refused here, in one line, before any load.
"""

from loadgen.inputs.batches import build_requests, read_references
from loadgen.inputs.specs import InputSpec, Sample, Strings, model_inputs, model_outputs

__all__ = [
    "InputSpec",
    "Sample",
    "Strings",
    "build_requests",
    "model_inputs",
    "model_outputs",
    "read_references",
]
