"""The output checker's arithmetic: tolerances per datatype, swapped answers, exact merging."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from loadgen.config.values import tolerances as parse_tolerances
from loadgen.errors import ConfigError
from loadgen.tallies import ValidationTally
from loadgen.transports.base import OutputTensor
from loadgen.transports.grpc_codec import parse_response as parse_grpc
from loadgen.transports.http import parse_response as parse_http
from loadgen.validation import DEFAULT_TOLERANCES, FLOAT_TYPES, Tolerance, Validator, decode_tensor


def fp(name: str, values: list[float], dtype: str = "FP32") -> OutputTensor:
    np_type = {"FP32": "<f4", "FP16": "<f2", "FP64": "<f8"}[dtype]
    return OutputTensor(name, dtype, (len(values),), np.asarray(values, np_type).tobytes())


def ints(name: str, values: list[int]) -> OutputTensor:
    return OutputTensor(name, "INT32", (len(values),), np.asarray(values, "<i4").tobytes())


REFS = [{"Y": fp("Y", [1.0, 2.0, 3.0])}, {"Y": fp("Y", [10.0, 20.0, 30.0])}, {"Y": fp("Y", [0.0, 0.0, 5.0])}]


def check(outputs: dict[str, OutputTensor], key: int = 0, refs: list | None = None) -> ValidationTally:  # type: ignore[type-arg]
    tally = ValidationTally()
    Validator(refs or REFS).check(key, outputs, tally)
    return tally


def test_identical_bytes_pass_without_differences() -> None:
    tally = check({"Y": fp("Y", [1.0, 2.0, 3.0])})
    assert (tally.checked, tally.mismatched, tally.max_abs_diff, tally.max_rel_diff) == (1, 0, 0.0, 0.0)


def test_fp32_within_tolerance_passes_but_records_the_difference() -> None:
    tally = check({"Y": fp("Y", [1.00001, 2.0, 3.0])})
    assert tally.mismatched == 0
    assert tally.max_abs_diff == pytest.approx(1e-5, rel=0.1)
    assert tally.max_rel_diff == pytest.approx(1e-5, rel=0.1)


def test_fp32_beyond_tolerance_is_a_mismatch_not_a_swap() -> None:
    tally = check({"Y": fp("Y", [1.001, 2.0, 3.0])})
    assert (tally.mismatched, tally.swapped) == (1, 0)
    assert tally.outputs == {"Y": 1}
    assert tally.example == "request 0: output Y differs"


def test_fp16_has_a_looser_default_than_fp32() -> None:
    refs = [{"Y": fp("Y", [1.0, 2.0], "FP16")}]
    assert check({"Y": fp("Y", [1.005, 2.0], "FP16")}, refs=refs).mismatched == 0
    assert check({"Y": fp("Y", [1.05, 2.0], "FP16")}, refs=refs).mismatched == 1
    assert DEFAULT_TOLERANCES["FP16"].rtol > DEFAULT_TOLERANCES["FP32"].rtol


def test_the_reference_of_another_request_is_a_swap() -> None:
    tally = check({"Y": fp("Y", [10.0, 20.0, 30.0])}, key=0)
    assert (tally.mismatched, tally.swapped) == (1, 1)
    assert tally.example == "request 0: output Y equals the reference of request 1"
    # within tolerance of another reference counts too (a batched kernel's rounding)
    tally = check({"Y": fp("Y", [10.0001, 20.0, 30.0])}, key=2)
    assert (tally.mismatched, tally.swapped) == (1, 1)


def test_integers_and_strings_compare_exactly() -> None:
    refs = [{"K": ints("K", [1, 2, 3])}]
    assert check({"K": ints("K", [1, 2, 3])}, refs=refs).mismatched == 0
    assert check({"K": ints("K", [1, 2, 4])}, refs=refs).mismatched == 1
    word = OutputTensor("S", "BYTES", (1,), (3).to_bytes(4, "little") + b"cat")
    other = OutputTensor("S", "BYTES", (1,), (3).to_bytes(4, "little") + b"dog")
    assert check({"S": other}, refs=[{"S": word}]).mismatched == 1
    assert decode_tensor(word).tolist() == [b"cat"]


def test_missing_output_or_wrong_shape_is_a_mismatch_with_infinite_difference() -> None:
    assert check({}).mismatched == 1
    tally = check({"Y": fp("Y", [1.0, 2.0])})
    assert tally.mismatched == 1 and math.isinf(tally.max_abs_diff)


def test_tallies_merge_exactly_and_survive_json() -> None:
    a = ValidationTally(
        checked=10, mismatched=2, swapped=1, max_abs_diff=0.5, max_rel_diff=math.inf, outputs={"Y": 2}
    )
    b = ValidationTally(checked=5, mismatched=1, max_abs_diff=0.7, outputs={"Y": 1, "Z": 1}, example="x")
    total = ValidationTally.merged([a, None, b])
    assert total == ValidationTally(15, 3, 1, 0.7, math.inf, {"Y": 3, "Z": 1}, "x")
    assert ValidationTally.from_dict(json.loads(json.dumps(total.to_dict()))) == total
    assert ValidationTally.merged([None]) is None


def test_parse_tolerances() -> None:
    assert parse_tolerances(["fp16=1e-3", "FP32=1e-4,1e-6"]) == {"FP16": (1e-3, 1e-3), "FP32": (1e-4, 1e-6)}
    for bad in ("INT32=1", "FP32", "FP32=x", "FP32=-1", "FP32=1,2,3"):
        with pytest.raises(ConfigError, match="bad"):
            parse_tolerances([bad])
    assert set(DEFAULT_TOLERANCES) == FLOAT_TYPES  # every type --tolerance takes has a default
    assert str(Tolerance(1e-4, 1e-5)) == "rtol=0.0001, atol=1e-05"


def test_grpc_and_http_responses_parse_to_the_same_outputs() -> None:
    y = np.arange(4, dtype="<f4")
    response = service_pb2.ModelInferResponse(model_name="m")
    out = response.outputs.add()
    out.name, out.datatype = "Y", "FP32"
    out.shape.extend([1, 4])
    response.raw_output_contents.append(y.tobytes())
    expected = {"Y": OutputTensor("Y", "FP32", (1, 4), y.tobytes())}
    assert parse_grpc(response.SerializeToString()) == expected
    header = json.dumps(
        {
            "outputs": [
                {"name": "Y", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": 16}}
            ]
        }
    ).encode()
    assert parse_http(len(header), header + y.tobytes()) == expected
    as_json = json.dumps(
        {"outputs": [{"name": "Y", "datatype": "FP32", "shape": [1, 4], "data": y.tolist()}]}
    )
    assert parse_http(None, as_json.encode()) == expected
