"""Input data as perf_analyzer documents it: every form works or is refused in one line, before any load."""

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loadgen.config.values import shapes as parse_shapes
from loadgen.errors import ConfigError
from loadgen.inputs import build_requests, model_inputs, read_references
from loadgen.inputs.json_data import stream_lengths
from loadgen.transports.base import InferRequestSpec

IDENTITY_META = {
    "name": "identity",
    "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": ["-1", "4"]}],
    "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": ["-1", "4"]}],
}
BATCHING = {"max_batch_size": 8}
MIXED_META = {
    "name": "mixed",
    "inputs": [
        {"name": "TOKENS", "datatype": "INT32", "shape": [-1, -1]},
        {"name": "SCALE", "datatype": "FP16", "shape": [-1, 1]},
        {"name": "IMAGE", "datatype": "BYTES", "shape": [-1, 1]},
    ],
    "outputs": [{"name": "TOTAL", "datatype": "FP32", "shape": [-1, 1]}],
}
OPTIONAL_META = {
    "name": "optional_input",
    "inputs": [
        {"name": "INPUT0", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "BIAS", "datatype": "FP32", "shape": [-1, 4]},
    ],
    "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [-1, 4]}],
}
OPTIONAL_CONFIG = {"max_batch_size": 8, "input": [{"name": "INPUT0"}, {"name": "BIAS", "optional": True}]}
TEXT_META = {
    "name": "text",
    "inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [-1, 2]}],
    "outputs": [{"name": "LABEL", "datatype": "BYTES", "shape": [-1, 1]}],
}
ONE_TWO_THREE_FOUR = np.array([1, 2, 3, 4], "<f4")


def _floats(data: bytes, dtype: str = "<f4") -> list[float]:
    values: list[float] = np.frombuffer(data, dtype=dtype).tolist()
    return values


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _serialized(*elements: bytes) -> bytes:
    return b"".join(len(e).to_bytes(4, "little") + e for e in elements)


def _requests(
    tmp_path: Path, document: object, meta: dict[str, Any] = IDENTITY_META, **kwargs: Any
) -> list[InferRequestSpec]:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(document))
    config = kwargs.pop("config", BATCHING)
    return build_requests(meta, config, **{"batch_size": 1, "seed": 0, **kwargs}, input_data=str(path))


def test_random_data_is_seeded_and_zero_is_zero() -> None:
    a = build_requests(IDENTITY_META, BATCHING, batch_size=2, input_data="random", seed=1)
    b = build_requests(IDENTITY_META, BATCHING, batch_size=2, input_data="random", seed=1)
    c = build_requests(IDENTITY_META, BATCHING, batch_size=2, input_data="random", seed=2)
    assert a == b and a != c
    (zero,) = build_requests(IDENTITY_META, BATCHING, batch_size=2, input_data="zero", seed=0)
    assert zero.inputs[0].shape == (2, 4) and zero.inputs[0].data == bytes(32)


@pytest.mark.parametrize(
    "value",
    [
        [1, 2, 3, 4],
        [[1, 2], [3, 4]],
        {"content": [1, 2, 3, 4]},
        {"content": [[1, 2], [3, 4]], "shape": [4]},
        {"b64": _b64(ONE_TWO_THREE_FOUR.tobytes())},
        {"b64": _b64(ONE_TWO_THREE_FOUR.tobytes()), "shape": [4]},
        {"content": {"b64": _b64(ONE_TWO_THREE_FOUR.tobytes())}, "shape": [4]},
        {"content": {"b64": _b64(ONE_TWO_THREE_FOUR.tobytes())}},
    ],
    ids=[
        "flat",
        "nested",
        "content",
        "content+shape",
        "b64",
        "b64+shape",
        "content.b64+shape",
        "content.b64",
    ],
)
def test_every_documented_form_of_a_value_gives_the_same_tensor(tmp_path: Path, value: object) -> None:
    (request,) = _requests(tmp_path, {"data": [{"INPUT0": value}]})
    assert request.inputs[0].shape == (1, 4) and request.inputs[0].data == ONE_TWO_THREE_FOUR.tobytes()


def test_entries_are_samples_cycled_into_batches(tmp_path: Path) -> None:
    entries: list[dict[str, Any]] = [
        {"INPUT0": [1, 2, 3, 4]},
        {"INPUT0": {"content": [[5, 6], [7, 8]], "shape": [4]}},
        {"INPUT0": {"b64": _b64(np.array([9, 10, 11, 12], "<f4").tobytes())}},
    ]
    one = _requests(tmp_path, {"data": entries})
    assert [_floats(r.inputs[0].data) for r in one] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    assert all(r.inputs[0].shape == (1, 4) for r in one)
    two = _requests(tmp_path, {"data": entries}, batch_size=2)
    assert [_floats(r.inputs[0].data) for r in two] == [[1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 1, 2, 3, 4]]


def test_mixed_types_variable_dims_and_bytes(tmp_path: Path) -> None:
    entries = [
        {"TOKENS": [1, 2, 3], "SCALE": [0.5], "IMAGE": ["\u00ffjpeg"]},
        {"TOKENS": [4, 5, 6], "SCALE": [2.0], "IMAGE": {"b64": _b64(b"\x03\x00\x00\x00png")}},
    ]
    first, second = _requests(tmp_path, {"data": entries}, MIXED_META)
    tokens, scale, image = first.inputs
    assert tokens.shape == (1, 3) and _floats(tokens.data, "<i4") == [1, 2, 3]
    assert scale.datatype == "FP16" and _floats(scale.data, "<f2") == [0.5]
    assert image.shape == (1, 1) and image.data == _serialized("\u00ffjpeg".encode())
    assert second.inputs[2].data == b"\x03\x00\x00\x00png"


@pytest.mark.parametrize(
    "value",
    [
        ["a b", "\u00e9t\u00e9"],
        [["a b", "\u00e9t\u00e9"]],
        {"content": ["a b", "\u00e9t\u00e9"], "shape": [2]},
        {"b64": _b64(_serialized(b"a b", "\u00e9t\u00e9".encode()))},
        {"content": {"b64": _b64(_serialized(b"a b", "\u00e9t\u00e9".encode()))}, "shape": [2]},
    ],
    ids=["text", "nested text", "content", "b64", "content.b64"],
)
def test_bytes_as_utf8_text_or_as_b64_of_the_serialized_tensor(tmp_path: Path, value: object) -> None:
    (request,) = _requests(tmp_path, {"data": [{"TEXT": value}]}, TEXT_META)
    assert request.inputs[0].shape == (1, 2)
    assert request.inputs[0].data == _serialized(b"a b", "\u00e9t\u00e9".encode())


def test_each_entry_may_have_its_own_shape_where_the_model_allows(tmp_path: Path) -> None:
    meta = {"name": "m", "inputs": [{"name": "X", "datatype": "INT64", "shape": [-1, -1]}], "outputs": []}
    entries = [{"X": {"content": [1, 2, 3, 4, 5, 6], "shape": [2, 3]}}, {"X": [[7], [8], [9]]}]
    first, second = _requests(tmp_path, {"data": entries}, meta, config={"max_batch_size": 0})
    assert first.inputs[0].shape == (2, 3) and _floats(first.inputs[0].data, "<i8") == [1, 2, 3, 4, 5, 6]
    assert second.inputs[0].shape == (3, 1) and _floats(second.inputs[0].data, "<i8") == [7, 8, 9]
    with pytest.raises(ConfigError, match=r"variable dimensions \(INT64 \[-1, -1\]\): give its \"shape\""):
        _requests(tmp_path, {"data": [{"X": [1, 2]}]}, meta, config={"max_batch_size": 0})


def test_shape_option_fills_variable_dims_for_generated_data() -> None:
    with pytest.raises(ConfigError, match="variable dimension.*--shape TOKENS"):
        build_requests(MIXED_META, BATCHING, batch_size=1, input_data="random", seed=0)
    (request,) = build_requests(
        MIXED_META, BATCHING, batch_size=2, input_data="random", seed=0, shapes=parse_shapes(["TOKENS:5"])
    )
    assert [t.shape for t in request.inputs] == [(2, 5), (2, 1), (2, 1)]


def test_optional_inputs_may_be_left_out_and_are_still_generated(tmp_path: Path) -> None:
    specs = model_inputs(OPTIONAL_META, OPTIONAL_CONFIG, {})
    assert [(s.name, s.optional) for s in specs] == [("INPUT0", False), ("BIAS", True)]
    entries = [{"INPUT0": [1, 2, 3, 4]}, {"INPUT0": [1, 2, 3, 4], "BIAS": [1, 1, 1, 1]}]
    without, with_bias = _requests(tmp_path, {"data": entries}, OPTIONAL_META, config=OPTIONAL_CONFIG)
    assert [t.name for t in without.inputs] == ["INPUT0"]
    assert [t.name for t in with_bias.inputs] == ["INPUT0", "BIAS"]
    (generated,) = build_requests(OPTIONAL_META, OPTIONAL_CONFIG, batch_size=1, input_data="zero", seed=0)
    assert [t.name for t in generated.inputs] == ["INPUT0", "BIAS"]
    with pytest.raises(ConfigError, match=r"data entry 0 has no data for input 'INPUT0' \(FP32 \[4\]\)"):
        _requests(tmp_path, {"data": [{"BIAS": [1, 1, 1, 1]}]}, OPTIONAL_META, config=OPTIONAL_CONFIG)


def test_samples_batched_together_must_agree_on_optional_inputs_and_shapes(tmp_path: Path) -> None:
    entries = [{"INPUT0": [1, 2, 3, 4]}, {"INPUT0": [1, 2, 3, 4], "BIAS": [1, 1, 1, 1]}]
    with pytest.raises(ConfigError) as info:
        _requests(tmp_path, {"data": entries}, OPTIONAL_META, config=OPTIONAL_CONFIG, batch_size=2)
    assert str(info.value) == (
        f"{tmp_path / 'data.json'}: data entries 0 and 1 are batched together (--batch-size 2) "
        "but disagree: entry 1 gives 'BIAS', entry 0 does not"
    )
    same = [entries[1], entries[1], entries[0], entries[0]]
    requests = _requests(tmp_path, {"data": same}, OPTIONAL_META, config=OPTIONAL_CONFIG, batch_size=2)
    assert [len(r.inputs) for r in requests] == [2, 1]
    tokens = [{"TOKENS": [1, 2], "SCALE": [1], "IMAGE": ["a"]}, {"TOKENS": [1], "SCALE": [1], "IMAGE": ["b"]}]
    with pytest.raises(ConfigError, match=r"'TOKENS' has shape \[2\] in entry 0 and \[1\] in entry 1"):
        _requests(tmp_path, {"data": tokens}, MIXED_META, batch_size=2)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"content": [1] * 8, "shape": [8]},
            r'"shape" \[8\] of input \'INPUT0\' does not fit the model\'s FP32 \[4\]$',
        ),
        ({"content": [1, 2, 3, 4], "shape": [2, 2]}, r"\[2, 2\] .*does not fit the model's FP32 \[4\]$"),
        ({"content": [1, 2, 3, 4], "shape": [1, 4]}, "leave out the batch dimension"),
        ({"b64": _b64(bytes(32)), "shape": [8]}, r"\[8\] .*does not fit"),
        ({"content": [1, 2, 3, 4], "shape": [-1]}, r'"shape" .* must be a list of sizes >= 0, got \[-1\]'),
        ({"content": [1, 2, 3, 4], "shape": "4"}, "must be a list of sizes >= 0, got a string"),
        ({"content": [1, 2, 3, 4], "shape": [4.0]}, "must be a list of sizes"),
    ],
)
def test_shapes_that_do_not_fit_the_model_are_refused(tmp_path: Path, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        _requests(tmp_path, {"data": [{"INPUT0": [1, 2, 3, 4]}, {"INPUT0": value}]})
    assert str(info.value).startswith(f"{tmp_path / 'data.json'}: data entry 1: ")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (5, 'needs a list, or an object with "content" or "b64", got a number \\(5\\)'),
        ("1,2,3,4", "needs a list, .* got a string"),
        (None, "got null"),
        ({"shape": [4]}, 'needs "content" or "b64" beside "shape"'),
        ({"contents": [1, 2, 3, 4]}, "has unknown key\\(s\\) 'contents'"),
        ({"content": [1, 2, 3, 4], "b64": "AAAA"}, 'gives both "content" and "b64"'),
        ({"content": 5}, '"content" of input \'INPUT0\' must be a list or \\{"b64": "..."\\}, got a number'),
        ({"content": "1 2 3 4"}, "must be a list or .* got a string"),
        ({"content": {"data": "AAAA"}}, "got an object with key\\(s\\) 'data'"),
        ({"b64": 5}, "\"b64\" of input 'INPUT0' must be a string, got a number"),
        ({"b64": "not base64!"}, "is not valid base64"),
        ({"b64": "AAAA"}, "b64 data for input 'INPUT0' has 3 bytes, FP32 \\[4\\] needs 16"),
        ([1, 2, 3], "3 values for input 'INPUT0', which needs 4"),
        ([[1, 2], [3]], "not a regular nested list"),
        (["a", "b", "c", "d"], "is not FP32: found strings"),
        ([1, None, 3, 4], "is not FP32: found values that are not numbers"),
        ([1, {"x": 1}, 3, 4], "is not FP32: found values that are not numbers"),
        ([True, False, True, False], "is not FP32: found true/false"),
    ],
)
def test_values_of_unexpected_types_are_one_line_errors(tmp_path: Path, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        _requests(tmp_path, {"data": [{"INPUT0": value}]})
    assert str(info.value).startswith(f"{tmp_path / 'data.json'}: data entry 0")
    assert "'INPUT0'" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("datatype", "values", "message"),
    [
        ("INT8", [1, 300], r"is not INT8: found numbers outside \[-128, 127\]"),
        ("UINT8", [-1, 2], r"is not UINT8: found numbers outside \[0, 255\]"),
        ("INT32", [1, 1.5], "is not INT32: found numbers that are not whole"),
        ("INT32", [True, False], "is not INT32: found true/false"),
        ("BOOL", [0, 2], r"is not BOOL: found numbers outside \[0, 1\]"),
        ("BYTES", ["a", 5], "is BYTES: its values must be strings .*found a number \\(5\\)"),
    ],
)
def test_values_that_would_change_type_are_refused(
    tmp_path: Path, datatype: str, values: list[object], message: str
) -> None:
    meta = {"name": "m", "inputs": [{"name": "X", "datatype": datatype, "shape": [2]}], "outputs": []}
    with pytest.raises(ConfigError, match=message):
        _requests(tmp_path, {"data": [{"X": values}]}, meta, config={"max_batch_size": 0})


def test_whole_floats_and_zero_one_integers_are_fine(tmp_path: Path) -> None:
    meta = {
        "name": "m",
        "inputs": [
            {"name": "I", "datatype": "INT16", "shape": [2]},
            {"name": "B", "datatype": "BOOL", "shape": [2]},
        ],
        "outputs": [],
    }
    (request,) = _requests(tmp_path, {"data": [{"I": [1.0, -2.0], "B": [1, 0]}]}, meta, config={})
    assert _floats(request.inputs[0].data, "<i2") == [1, -2] and request.inputs[1].data == b"\x01\x00"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"rows": []}', "perf_analyzer's format"),
        ('{"data": []}', "perf_analyzer's format"),
        ('{"data": [{}]}', r"data entry 0 has no data for input 'INPUT0' \(FP32 \[4\]\)$"),
        (
            '{"data": [{"INPUT0": [1, 2, 3, 4], "INPUT1": [1]}]}',
            r"data entry 0 names unknown input\(s\) INPUT1; the model has: INPUT0 \(FP32 \[4\]\)$",
        ),
        (
            '{"data": [[{"INPUT0": [1, 2, 3, 4]}], {"INPUT0": [1, 2, 3, 4]}]}',
            "data mixes streams \\(lists of entries, one per sequence\\) with single entries",
        ),
        ('{"data": [[{"INPUT0": [1, 2, 3]}]]}', "data stream 0 entry 0"),
        ('{"data": [5]}', "data entry 0 is a number \\(5\\), not an object of inputs$"),
        ('{"data": [{"ipc_stream": []}]}', "data entry 0: ipc_stream entries are not supported yet$"),
        ('{"data": [{"INPUT0": [1, 2, 3, 4]}], "ipc_stream": {}}', "ipc_stream data is not supported yet$"),
        ('{"data": [{"INPUT0": [1, 2, 3, 4]}], "valdation_data": []}', "unknown key\\(s\\) 'valdation_data'"),
    ],
)
def test_bad_documents_name_the_file_and_the_entry(tmp_path: Path, document: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(document)
    with pytest.raises(ConfigError, match=message) as info:
        build_requests(IDENTITY_META, BATCHING, batch_size=1, input_data=str(path), seed=0)
    assert str(path) in str(info.value)


def test_validation_data_are_the_references_batched_as_the_requests(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    data = [{"INPUT0": [i] * 4} for i in range(3)]
    expected = [{"OUTPUT0": {"content": [i] * 4, "shape": [4]}} for i in range(2)] + [{}]
    path.write_text(json.dumps({"data": data, "validation_data": expected}))
    references = read_references(path, IDENTITY_META, BATCHING, batch_size=1)
    assert references is not None and [list(r) for r in references] == [["OUTPUT0"], ["OUTPUT0"], []]
    assert _floats(references[1]["OUTPUT0"].data) == [1, 1, 1, 1] and references[1]["OUTPUT0"].shape == (1, 4)
    path.write_text(json.dumps({"data": data[:2], "validation_data": expected[:2]}))
    (pair,) = read_references(path, IDENTITY_META, BATCHING, batch_size=2) or []
    assert pair["OUTPUT0"].shape == (2, 4) and _floats(pair["OUTPUT0"].data) == [0] * 4 + [1] * 4
    path.write_text(json.dumps({"data": data[:1]}))
    assert read_references(path, IDENTITY_META, BATCHING, batch_size=1) is None
    path.write_text(json.dumps({"data": data[:1], "validation_data": [{"NOPE": [1]}]}))
    with pytest.raises(
        ConfigError, match=r"validation_data entry 0 names unknown output\(s\) NOPE; the model has"
    ):
        read_references(path, IDENTITY_META, BATCHING, batch_size=1)
    path.write_text(json.dumps({"data": data[:1], "validation_data": [{"OUTPUT0": [1, 2]}]}))
    with pytest.raises(
        ConfigError, match="validation_data entry 0: 2 values for output 'OUTPUT0', which needs 4"
    ):
        read_references(path, IDENTITY_META, BATCHING, batch_size=1)


def test_a_directory_holds_one_raw_file_per_input_and_output(tmp_path: Path) -> None:
    (tmp_path / "INPUT0").write_bytes(ONE_TWO_THREE_FOUR.tobytes())
    (tmp_path / "OUTPUT0").write_bytes((ONE_TWO_THREE_FOUR + 1).tobytes())
    (tmp_path / ".DS_Store").write_bytes(b"ignored")
    (request,) = build_requests(
        OPTIONAL_META, OPTIONAL_CONFIG, batch_size=2, input_data=str(tmp_path), seed=0
    )
    assert [(t.name, t.shape) for t in request.inputs] == [("INPUT0", (2, 4))]
    assert _floats(request.inputs[0].data) == [1, 2, 3, 4] * 2
    (reference,) = read_references(tmp_path, OPTIONAL_META, OPTIONAL_CONFIG, batch_size=2) or []
    assert reference["OUTPUT0"].shape == (2, 4) and _floats(reference["OUTPUT0"].data) == [2, 3, 4, 5] * 2
    (tmp_path / "BIAS").write_bytes(np.ones(4, "<f4").tobytes())
    (request,) = build_requests(
        OPTIONAL_META, OPTIONAL_CONFIG, batch_size=1, input_data=str(tmp_path), seed=0
    )
    assert [t.name for t in request.inputs] == ["INPUT0", "BIAS"]
    (tmp_path / "OUTPUT0").unlink()
    assert read_references(tmp_path, OPTIONAL_META, OPTIONAL_CONFIG, batch_size=1) is None


def test_a_directory_of_text_files_for_bytes_inputs(tmp_path: Path) -> None:
    (tmp_path / "TEXT").write_text("first line\n\u00e9t\u00e9\n")
    (tmp_path / "LABEL").write_text("positive\n")
    (request,) = build_requests(TEXT_META, BATCHING, batch_size=1, input_data=str(tmp_path), seed=0)
    assert request.inputs[0].shape == (1, 2)
    assert request.inputs[0].data == _serialized(b"first line", "\u00e9t\u00e9".encode())
    (reference,) = read_references(tmp_path, TEXT_META, BATCHING, batch_size=1) or []
    assert reference["LABEL"].data == _serialized(b"positive")
    (tmp_path / "TEXT").write_text("just one\n")
    with pytest.raises(ConfigError, match=r"TEXT: 1 strings for input 'TEXT', which needs 2 \(BYTES \[2\]\)"):
        build_requests(TEXT_META, BATCHING, batch_size=1, input_data=str(tmp_path), seed=0)


def test_bad_directories_are_one_line_errors(tmp_path: Path) -> None:
    def build(**kwargs: Any) -> list[InferRequestSpec]:
        args: dict[str, Any] = {"batch_size": 1, "seed": 0, **kwargs}
        return build_requests(OPTIONAL_META, OPTIONAL_CONFIG, input_data=str(tmp_path), **args)

    with pytest.raises(ConfigError, match=f"^{tmp_path} has no file 'INPUT0' for input 'INPUT0'"):
        build()
    (tmp_path / "INPUT0").write_bytes(bytes(12))
    with pytest.raises(
        ConfigError, match=r"INPUT0: raw data for input 'INPUT0' has 12 bytes, FP32 \[4\] needs 16$"
    ):
        build()
    (tmp_path / "INPUT0").write_bytes(bytes(16))
    (tmp_path / "input0").write_bytes(bytes(16))
    with pytest.raises(ConfigError) as info:
        build()
    assert str(info.value) == (
        f"{tmp_path}: file(s) 'input0' name neither an input nor an output; the model has inputs "
        "INPUT0 (FP32 [4]), BIAS (FP32 [4], optional); outputs OUTPUT0 (FP32 [4])"
    )
    variable = tmp_path / "variable"
    variable.mkdir()
    (variable / "TOKENS").write_bytes(bytes(12))
    with pytest.raises(ConfigError, match="variable dimension.*--shape TOKENS"):
        build_requests(MIXED_META, BATCHING, batch_size=1, input_data=str(variable), seed=0)


def test_numpy_files(tmp_path: Path) -> None:
    npy = tmp_path / "x.npy"
    np.save(npy, np.arange(12, dtype=np.float32).reshape(3, 4))
    requests = build_requests(IDENTITY_META, BATCHING, batch_size=1, input_data=str(npy), seed=0)
    assert [_floats(r.inputs[0].data) for r in requests] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    npz = tmp_path / "x.npz"
    np.savez(npz, INPUT0=np.ones((2, 4), np.float32))
    assert len(build_requests(IDENTITY_META, BATCHING, batch_size=1, input_data=str(npz), seed=0)) == 2
    (request,) = build_requests(OPTIONAL_META, OPTIONAL_CONFIG, batch_size=2, input_data=str(npz), seed=0)
    assert [t.name for t in request.inputs] == ["INPUT0"]
    np.savez(npz, INPUT0=np.ones((2, 4), np.float32), BIAS0=np.ones((2, 4), np.float32))
    with pytest.raises(ConfigError, match="array\\(s\\) 'BIAS0' name no input; the model has: INPUT0"):
        build_requests(OPTIONAL_META, OPTIONAL_CONFIG, batch_size=1, input_data=str(npz), seed=0)
    empty = tmp_path / "empty.npy"
    np.save(empty, np.ones((0, 4), np.float32))
    with pytest.raises(ConfigError, match="no samples"):
        build_requests(IDENTITY_META, BATCHING, batch_size=1, input_data=str(empty), seed=0)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.ones((2, 5), np.float32))
    with pytest.raises(ConfigError, match=r"expects FP32 \[4\]"):
        build_requests(IDENTITY_META, BATCHING, batch_size=1, input_data=str(wrong), seed=0)


def test_bf16_is_sent_as_the_upper_half_of_fp32(tmp_path: Path) -> None:
    meta = {"name": "m", "inputs": [{"name": "X", "datatype": "BF16", "shape": [2]}], "outputs": []}
    (request,) = build_requests(meta, {"max_batch_size": 0}, batch_size=1, input_data="zero", seed=0)
    assert request.inputs[0].shape == (2,) and request.inputs[0].data == bytes(4)
    (listed, raw) = _requests(
        tmp_path, {"data": [{"X": [1.0, -2.0]}, {"X": {"b64": _b64(b"\x80\x3f\x00\xc0")}}]}, meta, config={}
    )
    assert listed.inputs[0].data == raw.inputs[0].data == b"\x80\x3f\x00\xc0"


def test_bad_shapes_and_batch_sizes() -> None:
    for bad in (["TOKENS"], ["TOKENS:a"], ["TOKENS:-1"]):
        with pytest.raises(ConfigError, match="bad"):
            parse_shapes(bad)
    with pytest.raises(ConfigError, match="unknown input"):
        build_requests(MIXED_META, BATCHING, batch_size=1, input_data="zero", seed=0, shapes={"NOPE": (1,)})
    with pytest.raises(ConfigError, match="does not fit"):
        build_requests(
            IDENTITY_META, BATCHING, batch_size=1, input_data="zero", seed=0, shapes={"INPUT0": (5,)}
        )
    with pytest.raises(ConfigError, match="max_batch_size 8"):
        build_requests(IDENTITY_META, BATCHING, batch_size=9, input_data="zero", seed=0)
    with pytest.raises(ConfigError, match="does not support batching"):
        build_requests(IDENTITY_META, {"max_batch_size": 0}, batch_size=2, input_data="zero", seed=0)


def test_sequence_streams_are_their_entries_in_order_and_say_their_lengths(tmp_path: Path) -> None:
    path = tmp_path / "streams.json"
    path.write_text(json.dumps({"data": [[{"INPUT0": [i] * 4} for i in (1, 2, 3)], [{"INPUT0": [9] * 4}]]}))
    assert stream_lengths(path) == [3, 1]
    requests = build_requests(IDENTITY_META, BATCHING, batch_size=1, input_data=str(path), seed=0)
    assert [_floats(r.inputs[0].data)[0] for r in requests] == [1, 2, 3, 9]
    path.write_text(
        json.dumps({"data": [[{"INPUT0": [1] * 4}]], "validation_data": [[{"OUTPUT0": [1] * 4}]]})
    )
    with pytest.raises(ConfigError, match="validation_data with sequence streams is not supported"):
        read_references(path, IDENTITY_META, BATCHING, batch_size=1)
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"data": [{"INPUT0": [1] * 4}]}))
    assert stream_lengths(flat) is None
