"""Output checking under load (``--validate``): every answer against a reference.

References are the model's own answers at concurrency 1, taken before the sweep,
or the ``validation_data`` of a perf_analyzer JSON input file. Under load each
response is compared with the reference of the request that was sent: first as
raw bytes (one ``memcmp``, the common case), and only when the bytes differ
element-wise with a tolerance per datatype (floats: ``|a - r| <= atol + rtol*|r|``;
integers, booleans and strings: exact). A wrong answer that matches the reference
of a *different* request is counted as swapped: the signature of the known Triton
bugs where a staging buffer is freed too early or a CUDA graph returns an earlier
request's result.

The tally is per window and merges exactly (sums and maxima), like the histogram.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from loadgen.config.values import FLOAT_DATATYPES
from loadgen.tallies import ValidationTally
from loadgen.transports.base import NUMPY_DTYPES, CapturedArrivals, OutputTensor, Transport

MAX_SWAP_CANDIDATES = 256
"""References searched within tolerance for a swapped answer (exact matches are always found)."""


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float

    def __str__(self) -> str:
        return f"rtol={self.rtol:g}, atol={self.atol:g}"


DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    # batched kernels legitimately reorder float sums: allow that, catch real drift
    "FP64": Tolerance(1e-4, 1e-5),
    "FP32": Tolerance(1e-4, 1e-5),
    "FP16": Tolerance(1e-2, 1e-3),
    "BF16": Tolerance(5e-2, 1e-2),
}
FLOAT_TYPES = frozenset(FLOAT_DATATYPES)
"""Compared within a tolerance (``DEFAULT_TOLERANCES`` has one for each); others compare exactly."""


def decode_tensor(tensor: OutputTensor) -> npt.NDArray[Any]:
    """A tensor's raw bytes as an array (BYTES: an object array of ``bytes`` elements)."""
    if tensor.datatype == "BYTES":
        elements, offset, raw = [], 0, tensor.data
        while offset + 4 <= len(raw):
            size = int.from_bytes(raw[offset : offset + 4], "little")
            elements.append(raw[offset + 4 : offset + 4 + size])
            offset += 4 + size
        return np.array(elements, dtype=object)
    if tensor.datatype == "BF16":
        return (np.frombuffer(tensor.data, "<u2").astype("<u4") << 16).view("<f4")
    return np.frombuffer(tensor.data, NUMPY_DTYPES.get(tensor.datatype, "u1"))


Reference = Mapping[str, OutputTensor]
"""One request's expected outputs, by output name."""


RESPONSES = "(responses)"
"""A stream's pseudo-output: how many responses it had (compared exactly)."""


def flatten_stream(responses: Sequence[Mapping[str, OutputTensor]]) -> dict[str, OutputTensor]:
    """A stream's responses as one answer: ``NAME[i]`` is output NAME of response i, and
    :data:`RESPONSES` their count, so a stream is checked whole: count, order and content."""
    flat = {
        f"{name}[{i}]": OutputTensor(f"{name}[{i}]", t.datatype, t.shape, t.data)
        for i, outputs in enumerate(responses)
        for name, t in outputs.items()
    }
    flat[RESPONSES] = OutputTensor(RESPONSES, "INT64", (1,), len(responses).to_bytes(8, "little"))
    return flat


class Validator:
    """Compares answers with the references of the requests that were sent.

    ``streams``: answers are whole streams (:func:`flatten_stream`); one that carries any response
    of another request's reference (the same output at the same place) counts as swapped."""

    def __init__(
        self,
        references: Sequence[Reference],
        tolerances: Mapping[str, Tolerance] | None = None,
        *,
        streams: bool = False,
        names: Callable[[int], str] | None = None,
    ) -> None:
        self.references = list(references)
        self.streams = streams
        self.name = names or (lambda key: f"request {key}")
        """How a message names the request of a key (a sequence's: its stream and step)."""
        self.tolerances = dict(tolerances or DEFAULT_TOLERANCES)
        # (output, exact bytes) -> requests whose reference it is: finds most swaps in O(1)
        self._by_bytes: dict[tuple[str, bytes], list[int]] = {}
        for key, reference in enumerate(self.references):
            for name, tensor in reference.items():
                self._by_bytes.setdefault((name, tensor.data), []).append(key)

    def check(
        self,
        key: int,
        outputs: Mapping[str, OutputTensor],
        tally: ValidationTally,
        sequence_id: int | None = None,
    ) -> None:
        """Counts one answer to request ``key`` (of sequence ``sequence_id``) into ``tally``."""
        tally.checked += 1
        reference = self.references[key]
        wrong: list[str] = []
        for name, expected in reference.items():
            got = outputs.get(name)
            if got is not None and got.data == expected.data and got.shape == expected.shape:
                continue  # the common case: identical bytes
            if not self._close(name, expected, got, tally):
                wrong.append(name)
        if not wrong:
            return
        tally.mismatched += 1
        for name in wrong:
            tally.outputs[name] = tally.outputs.get(name, 0) + 1
        other = self._mixed_in(key, outputs, wrong) if self.streams else self._swapped_with(key, outputs)
        if other is not None:
            tally.swapped += 1
        if tally.example is None:
            what = f"equals the reference of {self.name(other)}" if other is not None else "differs"
            where = self.name(key) if sequence_id is None else f"sequence {sequence_id}, {self.name(key)}"
            tally.example = f"{where}: output {', '.join(wrong)} {what}"

    def _close(
        self, name: str, expected: OutputTensor, got: OutputTensor | None, tally: ValidationTally
    ) -> bool:
        if got is None or got.datatype != expected.datatype or got.shape != expected.shape:
            tally.max_abs_diff = tally.max_rel_diff = math.inf
            return False
        tolerance = self.tolerances.get(expected.datatype)
        if tolerance is None:  # integers, booleans, strings: exact, and the bytes differ
            return False
        a = decode_tensor(got).astype(np.float64)
        r = decode_tensor(expected).astype(np.float64)
        diff = np.abs(a - r)
        if diff.size:
            tally.max_abs_diff = max(tally.max_abs_diff, float(np.nanmax(diff, initial=0.0)))
            scale = np.abs(r)
            nonzero = scale > tolerance.atol
            if nonzero.any():
                tally.max_rel_diff = max(tally.max_rel_diff, float(np.max(diff[nonzero] / scale[nonzero])))
        return bool(np.all(diff <= tolerance.atol + tolerance.rtol * np.abs(r)))

    def _mixed_in(self, key: int, outputs: Mapping[str, OutputTensor], wrong: Sequence[str]) -> int | None:
        """A stream: another request whose reference has one of this stream's wrong responses."""
        for name in wrong:
            got = outputs.get(name)
            if got is not None and name != RESPONSES:
                other = next((k for k in self._by_bytes.get((name, got.data), []) if k != key), None)
                if other is not None:
                    return other
        return None

    def _swapped_with(self, key: int, outputs: Mapping[str, OutputTensor]) -> int | None:
        """Another request whose reference this answer matches, if any."""
        names = list(self.references[key])
        if not names or len(self.references) < 2:
            return None
        first = outputs.get(names[0])
        if first is None:
            return None
        candidates = [k for k in self._by_bytes.get((names[0], first.data), []) if k != key]
        if not candidates:
            candidates = [k for k in range(len(self.references)) if k != key][:MAX_SWAP_CANDIDATES]
        scratch = ValidationTally()
        for other in candidates:
            reference = self.references[other]
            if all(
                (got := outputs.get(name)) is not None
                and (got.data == expected.data or self._close(name, expected, got, scratch))
                for name, expected in reference.items()
            ):
                return other
        return None


def tolerances_from(overrides: Mapping[str, tuple[float, float]]) -> dict[str, Tolerance]:
    """The defaults with a run's stored ``--tolerance`` overrides applied."""
    return {**DEFAULT_TOLERANCES, **{k: Tolerance(*v) for k, v in overrides.items()}}


class ReferenceFailed(Exception):
    """A reference request failed: there is nothing to compare with."""


async def take_stream_references(transport: Transport, prepared: Sequence[Any]) -> list[Reference]:
    """``--streaming``: each prepared request streamed once, alone: the expected whole streams."""
    references: list[Reference] = []
    send = transport.stream_sender(0)  # type: ignore[attr-defined]
    arrivals = CapturedArrivals()
    for key, request in enumerate(prepared):
        arrivals.clear()
        error = await send(request, arrivals)
        if error is not None:
            raise ReferenceFailed(f"the reference stream {key} (at concurrency 1) failed: {error}")
        references.append(flatten_stream(arrivals.responses))
    return references


async def take_references(transport: Transport, prepared: Sequence[Any]) -> list[Reference]:
    """Each prepared request sent once, one at a time (concurrency 1): the expected answers."""
    references: list[Reference] = []
    send = transport.capture_sender(0)
    for key, request in enumerate(prepared):
        error, response = await send(request)
        if error is not None:
            raise ReferenceFailed(f"the reference request {key} (at concurrency 1) failed: {error}")
        references.append(transport.parse_outputs(response))
    return references
