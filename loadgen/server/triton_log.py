"""The few lines of a Triton log that explain a failure, for error messages.

A failed start leaves dozens of log lines, most of them noise or repetitions; the
user should read the reason in the error message, not hunt for it in the log file.
"""

from __future__ import annotations

import re

_MAX_ERROR_LINES = 5

# Triton's own log prefix, e.g. 'E1128 16:57:15.964718 3733 backend_model.cc:692] "msg"'.
_LOG_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ [^\]]+\] ?")
_ERROR_WORDS = re.compile(r"error|failed|unavailable", re.IGNORECASE)
# Printed on every CPU-only start; never the reason a start failed.
_NOISE = re.compile(r"CudaDriverHelper|NVML|DCGM|CUDA driver|pinned memory|cuda memory pool", re.IGNORECASE)


def _normalise(line: str) -> str:
    line = _LOG_PREFIX.sub("", line.strip())
    if line.startswith("|"):  # a row of the model status table
        line = " ".join(cell.strip() for cell in line.strip("|").split("|") if cell.strip())
    if len(line) >= 2 and line[0] == line[-1] == '"':
        line = line[1:-1]
    # Multi-line messages (Python tracebacks) are logged with escaped newlines: keep line one.
    line = line.split("\\n", 1)[0].replace('\\"', '"').strip()
    return line[:300]


def error_lines(log_text: str, limit: int = _MAX_ERROR_LINES) -> list[str]:
    """The few log lines that explain a failure, without Triton's repetitions of them.

    Triton reports one model error up to five times (stub, instance, lifecycle, status
    table, ...); lines ending in the same text are collapsed to the most telling one.
    """
    groups: dict[str, tuple[int, str]] = {}
    for raw in log_text.splitlines():
        if raw.startswith("+") or not _ERROR_WORDS.search(raw) or _NOISE.search(raw):
            continue
        line = _normalise(raw)
        if not line or not _ERROR_WORDS.search(line):
            continue
        key = line[-40:].lower()
        score = 2 if "failed to load '" in line else 1 if "UNAVAILABLE" in line else 0
        if key not in groups or score > groups[key][0]:
            groups[key] = (score, line)
    kept = [line for _, line in groups.values()]
    # "failed to load 'x'" says nothing that "failed to load 'x' version 1: why" does not.
    kept = [a for a in kept if not any(a != b and a in b for b in kept)]
    return kept[:limit]
