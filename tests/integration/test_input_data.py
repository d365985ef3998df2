"""Real input data against the real server: perf_analyzer's JSON and directory forms, BYTES, mixed types,
optional inputs, expected outputs, and data that does not fit refused before any load."""

from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path

import numpy as np

from loadgen.errors import EXIT_ERRORS
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore
from tests.cli import loadgen, loadgen_here, one_line_error

QUICK = ["-p", "500", "--warmup", "200", "-r", "3", "--no-metrics", "-q"]


def _only_run(db: str) -> tuple[int, int, dict[str, int]]:
    with RunStore(db) as store:
        (run,) = store.list_runs()
        (step,) = store.steps(run.id)
        return step.request_count, step.error_count, step.errors


def test_perf_analyzer_json_with_bytes_images_runs(triton: EmbeddedServer, tmp_path: Path) -> None:
    images = [bytes(np.random.default_rng(i).integers(0, 256, 300, dtype=np.uint8)) for i in range(3)]
    data = {
        "data": [
            {"IMAGE": {"b64": base64.b64encode(len(img).to_bytes(4, "little") + img).decode()}}
            for img in images
        ]
        + [{"IMAGE": ["plain text counts as bytes too"]}]
    }
    path = tmp_path / "images.json"
    path.write_text(json.dumps(data))
    db = f"sqlite:///{tmp_path}/r.db"
    for protocol, url in (("grpc", triton.grpc_url), ("http", triton.http_url)):
        result = loadgen_here(
            "sweep",
            "-m",
            "image_classifier",
            "-i",
            protocol,
            "-u",
            url,
            "--input-data",
            str(path),
            "--batch-size",
            "2",
            "--concurrency",
            "2",
            *QUICK,
            "--db",
            db,
        )
        assert result.returncode == 0, result.stderr
    with RunStore(db) as store:
        for run in store.list_runs():
            (step,) = store.steps(run.id)
            assert step.request_count > 0 and step.error_count == 0, step.errors
            assert step.inference_count == 2 * step.request_count


def test_mixed_types_with_a_variable_dimension(triton: EmbeddedServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    missing = loadgen_here("sweep", "-m", "mixed", "-u", triton.grpc_url, "--db", db)
    assert missing.returncode == 2 and "--shape TOKENS" in one_line_error(missing)
    result = loadgen_here(
        "sweep",
        "-m",
        "mixed",
        "-u",
        triton.grpc_url,
        "--shape",
        "TOKENS:6",
        "--shape",
        "MASK:6",
        "--batch-size",
        "4",
        "--concurrency",
        "1",
        *QUICK,
        "--db",
        db,
    )
    assert result.returncode == 0, result.stderr
    requests, errors, _ = _only_run(db)
    assert requests > 0 and errors == 0


def test_a_sample_the_model_rejects_is_counted_with_its_message(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps({"data": [{"TOKENS": [1, 2, 3], "SCALE": [1.0], "MASK": [True, False]}]}))
    db = f"sqlite:///{tmp_path}/r.db"
    result = loadgen_here(
        "sweep",
        "-m",
        "mixed",
        "-u",
        triton.grpc_url,
        "--input-data",
        str(path),
        "--concurrency",
        "1",
        *QUICK,
        "--db",
        db,
    )
    assert result.returncode == EXIT_ERRORS, result.stderr  # failing requests are data: stored, exit 4
    requests, errors, reasons = _only_run(db)
    assert requests == 0 and errors > 0
    assert any("MASK [1, 2] must match TOKENS [1, 3]" in reason for reason in reasons)


def test_bad_input_files_are_one_line_errors(triton: EmbeddedServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": [{"INPUT0": [1.0, 2.0]}]}))
    result = loadgen_here(
        "sweep", "-m", "identity", "-u", triton.grpc_url, "--input-data", str(bad), "--db", db
    )
    assert result.returncode == 2
    assert "2 values for input 'INPUT0', which needs 16" in one_line_error(result)
    nowhere = loadgen_here(
        "sweep", "-m", "identity", "-u", triton.grpc_url, "--input-data", "nope.json", "--db", db
    )
    assert nowhere.returncode == 2 and "--input-data must be random, zero, a data file" in one_line_error(
        nowhere
    )


def _inferences(triton: EmbeddedServer, model: str) -> int:
    """The model's inference count, as the server's statistics give it."""
    with urllib.request.urlopen(f"{triton.http_url}/v2/models/{model}/stats", timeout=10) as response:
        stats = json.load(response)["model_stats"]
    return sum(int(version.get("inference_count", 0)) for version in stats)


def test_a_shape_that_does_not_fit_the_model_is_refused_before_any_load(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    path = tmp_path / "shapes.json"
    fits = {"INPUT0": {"content": [1.0] * 4, "shape": [4]}}
    path.write_text(json.dumps({"data": [fits, {"INPUT0": {"content": [1.0] * 4, "shape": [2, 2]}}]}))
    db = f"sqlite:///{tmp_path}/r.db"
    before = _inferences(triton, "optional_input")
    args = ["sweep", "-m", "optional_input", "-u", triton.grpc_url, "--concurrency", "1", *QUICK, "--db", db]
    result = loadgen_here(*args, "--input-data", str(path))
    assert result.returncode == 2
    assert one_line_error(result).endswith(
        f"{path}: data entry 1: \"shape\" [2, 2] of input 'INPUT0' does not fit the model's FP32 [4]"
    )
    content_b64 = {"content": {"b64": "AAAA"}, "shape": [4]}  # 3 bytes: once leaked a Python message
    path.write_text(json.dumps({"data": [{"INPUT0": content_b64}]}))
    result = loadgen_here(*args, "--input-data", str(path))
    assert result.returncode == 2
    assert "data entry 0: b64 data for input 'INPUT0' has 3 bytes, FP32 [4] needs 16" in one_line_error(
        result
    )
    assert _inferences(triton, "optional_input") == before
    with RunStore(db) as store:
        assert store.list_runs() == []


def test_an_optional_input_may_be_left_out(triton: EmbeddedServer, tmp_path: Path) -> None:
    """OUTPUT0 = INPUT0 + BIAS: the expected outputs hold only if BIAS goes where an entry gives it."""
    b64 = base64.b64encode(np.array([1, 1, 1, 1], "<f4").tobytes()).decode()
    data = [
        {"INPUT0": [1, 2, 3, 4]},
        {"INPUT0": [[1, 2], [3, 4]], "BIAS": {"content": {"b64": b64}, "shape": [4]}},
    ]
    expected = [{"OUTPUT0": [1, 2, 3, 4]}, {"OUTPUT0": {"content": [2, 3, 4, 5], "shape": [4]}}]
    path = tmp_path / "optional.json"
    path.write_text(json.dumps({"data": data, "validation_data": expected}))
    db = f"sqlite:///{tmp_path}/r.db"
    for protocol, url in (("grpc", triton.grpc_url), ("http", triton.http_url)):
        result = loadgen_here(
            "sweep", "-m", "optional_input", "-i", protocol, "-u", url, "--input-data", str(path),
            "--validate", "--concurrency", "2", *QUICK, "--db", db,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    with RunStore(db) as store:
        for run in store.list_runs():
            (step,) = store.steps(run.id)
            assert step.request_count > 0 and step.error_count == 0, step.errors
            assert step.validated_count and step.mismatch_count == 0


def test_variable_shapes_per_entry_with_their_expected_outputs(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    data = [
        {"TOKENS": {"content": [1, 2, 3], "shape": [3]}, "SCALE": [2.0], "MASK": [True, False, True]},
        {"TOKENS": [4, 5, 6, 7, 8], "SCALE": [0.5], "MASK": [True] * 5},
    ]
    expected = [{"TOTAL": [8.0], "KEPT": [1, 0, 3]}, {"TOTAL": [15.0], "KEPT": [4, 5, 6, 7, 8]}]
    path = tmp_path / "variable.json"
    path.write_text(json.dumps({"data": data, "validation_data": expected}))
    db = f"sqlite:///{tmp_path}/r.db"
    result = loadgen_here(
        "sweep", "-m", "mixed", "-u", triton.grpc_url, "--input-data", str(path), "--validate",
        "--concurrency", "1", *QUICK, "--db", db,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with RunStore(db) as store:
        (run,) = store.list_runs()
        (step,) = store.steps(run.id)
        assert step.request_count > 0 and step.error_count == 0, step.errors
        assert step.validated_count and step.mismatch_count == 0


def test_a_directory_of_raw_files_with_expected_outputs(triton: EmbeddedServer, tmp_path: Path) -> None:
    folder = tmp_path / "optional"
    folder.mkdir()
    (folder / "INPUT0").write_bytes(np.array([1, 2, 3, 4], "<f4").tobytes())
    (folder / "BIAS").write_bytes(np.array([10, 10, 10, 10], "<f4").tobytes())
    (folder / "OUTPUT0").write_bytes(np.array([11, 12, 13, 14], "<f4").tobytes())
    db = f"sqlite:///{tmp_path}/r.db"
    args = ["sweep", "-m", "optional_input", "-u", triton.grpc_url, "--concurrency", "1", *QUICK, "--db", db]
    result = loadgen(*args, "--input-data", str(folder), "--validate", "--batch-size", "2")
    assert result.returncode == 0, result.stderr
    with RunStore(db) as store:
        (run,) = store.list_runs()
        (step,) = store.steps(run.id)
        assert step.request_count > 0 and step.error_count == 0, step.errors
        assert step.inference_count == 2 * step.request_count
        assert step.validated_count and step.mismatch_count == 0
    (folder / "INPUT1").write_bytes(bytes(16))
    result = loadgen_here(*args, "--input-data", str(folder))
    assert result.returncode == 2
    assert f"{folder}: file(s) 'INPUT1' name neither an input nor an output" in one_line_error(result)


def test_each_model_of_a_sweep_has_its_own_input_data(triton: EmbeddedServer, tmp_path: Path) -> None:
    identity = tmp_path / "identity.json"
    identity.write_text(json.dumps({"data": [{"INPUT0": [float(i)] * 16} for i in range(3)]}))
    optional = tmp_path / "optional.json"
    optional.write_text(json.dumps({"data": [{"INPUT0": [1, 2, 3, 4]}]}))
    db = f"sqlite:///{tmp_path}/r.db"
    result = loadgen_here(
        "sweep",
        "-m",
        f"identity:input-data={identity}",
        "-m",
        f"optional_input:input-data={optional}",
        "-m",
        "mixed:shape=TOKENS:6,shape=MASK:6,input-data=zero",
        "-u",
        triton.grpc_url,
        "--concurrency",
        "1",
        *QUICK,
        "--db",
        db,
    )
    assert result.returncode == 0, result.stderr
    with RunStore(db) as store:
        runs = {run.model: run for run in store.list_runs()}
        assert runs["identity"].settings["input_data"] == str(identity)
        assert runs["optional_input"].settings["input_data"] == str(optional)
        assert runs["mixed"].settings["input_data"] == "zero"
        for run in runs.values():
            (step,) = store.steps(run.id)
            assert step.request_count > 0 and step.error_count == 0, (run.model, step.errors)
