"""``loadgen model add`` (issue 21): from an ONNX file to a Triton model repository entry."""
