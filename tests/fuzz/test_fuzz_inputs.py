"""perf_analyzer's JSON input-data files, fuzzed: any JSON document, and documents with the right keys
holding the wrong types and shapes. ``build_requests`` and ``read_references`` give requests or refuse
the file with a ConfigError on one line, before any load; never a Python error."""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from loadgen.errors import ConfigError
from loadgen.inputs import build_requests, read_references
from loadgen.inputs.specs import NUMPY
from tests.fuzz.promise import refused_in_one_line
from tests.unit.test_inputs import (
    BATCHING,
    IDENTITY_META,
    MIXED_META,
    OPTIONAL_CONFIG,
    OPTIONAL_META,
    TEXT_META,
)

EVERY_TYPE = [*NUMPY, "BYTES"]
ALL_TYPES_META = {
    "name": "all_types",
    "inputs": [{"name": t, "datatype": t, "shape": [-1, 2]} for t in EVERY_TYPE],
    "outputs": [{"name": "OUT", "datatype": "BF16", "shape": [-1, -1]}],
}
MODELS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (IDENTITY_META, BATCHING),
    (IDENTITY_META, {}),
    (MIXED_META, BATCHING),
    (OPTIONAL_META, OPTIONAL_CONFIG),
    (TEXT_META, BATCHING),
    (ALL_TYPES_META, BATCHING),
]
NAMES = sorted({t["name"] for meta, _ in MODELS for t in (*meta["inputs"], *meta["outputs"])})
KEYS = ["data", "validation_data", "content", "b64", "shape", "ipc_stream", *NAMES]
"""The format's keys and the models' input and output names: documents that are nearly right."""

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(["AAAA", "AACAPwAAAEA=", "AQAAAGE=", "====", "AA", "\ud800"]),
)
json_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner)
    ),
    max_leaves=20,
)
_numbers = st.integers(-(2**65), 2**65) | st.floats() | st.booleans() | st.text(max_size=3)
_shapes = st.lists(st.integers(-1, 5) | st.sampled_from([True, 1.5, "2", 2**70]), max_size=3)
_tensor_values = st.one_of(
    st.lists(_numbers, max_size=9),
    st.lists(st.lists(_numbers, max_size=3), max_size=3),
    st.fixed_dictionaries({"content": st.lists(_numbers, max_size=9)}, optional={"shape": _shapes}),
    st.fixed_dictionaries(
        {"b64": st.binary(max_size=24).map(lambda raw: base64.b64encode(raw).decode())},
        optional={"shape": _shapes},
    ),
    st.fixed_dictionaries(
        {
            "content": st.fixed_dictionaries(
                {"b64": st.binary(max_size=24).map(lambda r: base64.b64encode(r).decode())}
            )
        },
        optional={"shape": _shapes},
    ),
    json_values,
)
"""An input's value in every documented form, its numbers, sizes and bytes drawn at random."""


@st.composite
def entries(draw: st.DrawFn, names: list[str]) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(names), unique=True)) if names else []
    return {name: draw(_tensor_values) for name in chosen}


def near_valid_for(meta: dict[str, Any]) -> st.SearchStrategy[str]:
    """A document with the model's own input and output names, their values of any form."""
    inputs = [i["name"] for i in meta["inputs"]]
    outputs = [o["name"] for o in meta["outputs"]]
    return st.builds(
        lambda data, validation: json.dumps(
            {"data": data, **({} if validation is None else {"validation_data": validation})}
        ),
        st.lists(entries(inputs), min_size=1, max_size=3),
        st.none() | st.lists(entries(outputs), max_size=3),
    )


any_entries = st.builds(
    lambda data, validation: {
        "data": data,
        **({} if validation is None else {"validation_data": validation}),
    },
    st.lists(json_values, max_size=3),
    st.none() | json_values,
)
"""The format's top-level keys, anything under them."""


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def _deep(depth: int) -> str:
    return '{"data": [{"INPUT0": ' + "[" * depth + "]" * depth + "}]}"


@given(
    st.sampled_from(range(len(MODELS))),
    st.one_of(json_values.map(json.dumps), any_entries.map(json.dumps), st.binary(max_size=30).map(repr)),
    st.integers(1, 3),
)
@example(0, _deep(100_000), 1)  # was RecursionError
@example(0, '{"data": [{"INPUT0": [' + "1" * 5000 + "]}]}", 1)  # past int()'s 4300 digits: was ValueError
@example(4, '{"data": [{"TEXT": ["\\ud800", "a"]}]}', 1)  # a lone surrogate: was UnicodeEncodeError
@example(0, '{"data": [{"IN\\nPUT": [1, 2, 3, 4]}]}', 1)  # an unknown name with a line break: two lines
def test_json_input_data_gives_requests_or_one_line(
    folder: Path, model: int, document: str, batch: int
) -> None:
    meta, config = MODELS[model]
    path = folder / "data.json"
    path.write_text(document, encoding="utf-8", errors="surrogatepass")
    with refused_in_one_line(ConfigError):
        requests = build_requests(meta, config, batch_size=batch, input_data=str(path), seed=0)
        assert requests and all(r.model == meta["name"] for r in requests)
        read_references(path, meta, config, batch)


@given(st.data(), st.sampled_from(range(len(MODELS))), st.integers(1, 3))
def test_documents_with_the_models_names_give_requests_or_one_line(
    folder: Path, data: st.DataObject, model: int, batch: int
) -> None:
    meta, config = MODELS[model]
    path = folder / "data.json"
    path.write_text(data.draw(near_valid_for(meta)), encoding="utf-8", errors="surrogatepass")
    with refused_in_one_line(ConfigError):
        build_requests(meta, config, batch_size=batch, input_data=str(path), seed=0)
        read_references(path, meta, config, batch)


@given(
    st.sampled_from([MIXED_META, ALL_TYPES_META]),
    st.dictionaries(
        st.sampled_from(["TOKENS", "INT8", "FP32", "BYTES", "NOPE", "IN\nPUT"]),
        st.lists(st.integers(0, 64) | st.sampled_from([2**31, 10**11, 2**62]), max_size=2),
    ),
)
@example(MIXED_META, {"TOKENS": [10**11]})  # 400 GB of random data: was MemoryError
def test_generated_data_for_any_shape_is_made_or_refused_in_one_line(
    meta: dict[str, Any], shapes: dict[str, list[int]]
) -> None:
    with refused_in_one_line(ConfigError):
        build_requests(
            meta,
            BATCHING,
            batch_size=1,
            input_data="zero",
            seed=0,
            shapes={k: tuple(v) for k, v in shapes.items()},
        )
