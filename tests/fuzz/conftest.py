"""Hypothesis settings of the fuzz suite: small and reproducible in CI, larger on demand.

CI (no environment variable) runs 100 examples per test, derandomized so that a failure
shows on every run, without an example database written into the tree. Locally,
``LOADGEN_FUZZ_EXAMPLES=20000 pytest tests/fuzz`` explores that many fresh random examples
per test (tests that talk over sockets take a tenth of that).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_EXAMPLES = os.environ.get("LOADGEN_FUZZ_EXAMPLES")

settings.register_profile(
    "loadgen-fuzz",
    max_examples=int(_EXAMPLES or 100),
    deadline=None,
    derandomize=_EXAMPLES is None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("loadgen-fuzz")
