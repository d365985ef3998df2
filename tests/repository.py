"""The demo models of ``model_repository/``, as the server lists them (sorted)."""

DEMO_MODELS = [
    "accumulate",
    "accumulate_crossed",
    "bls_pipeline",
    "classify_pipeline",
    "custom_metric",
    "drifting",
    "echo_parameters",
    "error_code",
    "fixed_latency",
    "identity",
    "image_classifier",
    "large_input",
    "mixed",
    "optional_input",
    "preprocess",
    "priority_queue",
    "queue_of_one",
    "resnet",
    "slow_sometimes",
    "stream_fails_midway",
    "stream_sometimes_empty",
    "stream_swapping",
    "token_stream",
]
LISTED = ", ".join(DEMO_MODELS)
"""As messages list them."""
