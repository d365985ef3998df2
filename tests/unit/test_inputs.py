import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loadgen.config.values import shapes as parse_shapes
from loadgen.errors import ConfigError
from loadgen.inputs import build_requests

IDENTITY_META = {
    "name": "identity",
    "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": ["-1", "4"]}],
    "outputs": [{"name": "OUTPUT0"}],
}
BATCHING = {"max_batch_size": 8}
MIXED_META = {
    "name": "mixed",
    "inputs": [
        {"name": "TOKENS", "datatype": "INT32", "shape": [-1, -1]},
        {"name": "SCALE", "datatype": "FP16", "shape": [-1, 1]},
        {"name": "IMAGE", "datatype": "BYTES", "shape": [-1, 1]},
    ],
    "outputs": [{"name": "TOTAL"}],
}


def _floats(data: bytes, dtype: str = "<f4") -> list[float]:
    values: list[float] = np.frombuffer(data, dtype=dtype).tolist()
    return values


def test_random_data_is_seeded_and_zero_is_zero() -> None:
    a = build_requests(IDENTITY_META, BATCHING, batch_size=2, input_data="random", seed=1)
    b = build_requests(IDENTITY_META, BATCHING, batch_size=2, input_data="random", seed=1)
    c = build_requests(IDENTITY_META, BATCHING, batch_size=2, input_data="random", seed=2)
    assert a == b and a != c
    (zero,) = build_requests(IDENTITY_META, BATCHING, batch_size=2, input_data="zero", seed=0)
    assert zero.inputs[0].shape == (2, 4) and zero.inputs[0].data == bytes(32)


def test_perf_analyzer_json_entries_are_samples_cycled_into_batches(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    entries: list[dict[str, Any]] = [
        {"INPUT0": [1, 2, 3, 4]},
        {"INPUT0": {"content": [[5, 6], [7, 8]], "shape": [4]}},
        {"INPUT0": {"b64": base64.b64encode(np.array([9, 10, 11, 12], "<f4").tobytes()).decode()}},
    ]
    path.write_text(json.dumps({"data": entries}))
    one = build_requests(IDENTITY_META, BATCHING, batch_size=1, input_data=str(path), seed=0)
    assert [_floats(r.inputs[0].data) for r in one] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    assert all(r.inputs[0].shape == (1, 4) for r in one)
    two = build_requests(IDENTITY_META, BATCHING, batch_size=2, input_data=str(path), seed=0)
    assert [_floats(r.inputs[0].data) for r in two] == [[1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 1, 2, 3, 4]]


def test_mixed_types_variable_dims_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "mixed.json"
    path.write_text(
        json.dumps(
            {
                "data": [
                    {"TOKENS": [1, 2, 3], "SCALE": [0.5], "IMAGE": ["\u00ffjpeg"]},
                    {
                        "TOKENS": [4, 5, 6],
                        "SCALE": [2.0],
                        "IMAGE": {"b64": base64.b64encode(b"\x03\x00\x00\x00png").decode()},
                    },
                ]
            }
        )
    )
    first, second = build_requests(MIXED_META, BATCHING, batch_size=1, input_data=str(path), seed=0)
    tokens, scale, image = first.inputs
    assert tokens.shape == (1, 3) and _floats(tokens.data, "<i4") == [1, 2, 3]
    assert scale.datatype == "FP16" and _floats(scale.data, "<f2") == [0.5]
    assert (
        image.shape == (1, 1)
        and image.data == len("\u00ffjpeg".encode()).to_bytes(4, "little") + "\u00ffjpeg".encode()
    )
    assert second.inputs[2].data == b"\x03\x00\x00\x00png"


def test_shape_option_fills_variable_dims_for_generated_data() -> None:
    with pytest.raises(ConfigError, match="variable dimension.*--shape TOKENS"):
        build_requests(MIXED_META, BATCHING, batch_size=1, input_data="random", seed=0)
    (request,) = build_requests(
        MIXED_META, BATCHING, batch_size=2, input_data="random", seed=0, shapes=parse_shapes(["TOKENS:5"])
    )
    assert [t.shape for t in request.inputs] == [(2, 5), (2, 1), (2, 1)]


def test_numpy_files(tmp_path: Path) -> None:
    npy = tmp_path / "x.npy"
    np.save(npy, np.arange(12, dtype=np.float32).reshape(3, 4))
    requests = build_requests(IDENTITY_META, BATCHING, batch_size=1, input_data=str(npy), seed=0)
    assert [_floats(r.inputs[0].data) for r in requests] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    npz = tmp_path / "x.npz"
    np.savez(npz, INPUT0=np.ones((2, 4), np.float32))
    assert len(build_requests(IDENTITY_META, BATCHING, batch_size=1, input_data=str(npz), seed=0)) == 2
    empty = tmp_path / "empty.npy"
    np.save(empty, np.ones((0, 4), np.float32))
    with pytest.raises(ConfigError, match="no samples"):
        build_requests(IDENTITY_META, BATCHING, batch_size=1, input_data=str(empty), seed=0)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.ones((2, 5), np.float32))
    with pytest.raises(ConfigError, match=r"expects FP32 \[4\]"):
        build_requests(IDENTITY_META, BATCHING, batch_size=1, input_data=str(wrong), seed=0)


def test_bf16_is_sent_as_the_upper_half_of_fp32() -> None:
    meta = {"name": "m", "inputs": [{"name": "X", "datatype": "BF16", "shape": [2]}], "outputs": []}
    (request,) = build_requests(meta, {"max_batch_size": 0}, batch_size=1, input_data="zero", seed=0)
    assert request.inputs[0].shape == (2,) and request.inputs[0].data == bytes(4)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"rows": []}', "perf_analyzer's format"),
        ('{"data": [{"OTHER": [1]}]}', "no data for input 'INPUT0' \\(FP32 \\[4\\]\\)"),
        ('{"data": [{"INPUT0": [1, 2, 3]}]}', "3 values for input 'INPUT0', which needs 4"),
        ('{"data": [{"INPUT0": ["a", "b", "c", "d"]}]}', "not FP32"),
        ('{"data": [{"INPUT0": {"b64": "AAAA"}}]}', "has 3 bytes"),
    ],
)
def test_bad_data_files_name_the_input_and_what_it_needs(tmp_path: Path, document: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(document)
    with pytest.raises(ConfigError, match=message):
        build_requests(IDENTITY_META, BATCHING, batch_size=1, input_data=str(path), seed=0)


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
