"""Real input data against the real server: perf_analyzer's JSON format, BYTES, mixed types."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore
from tests.cli import loadgen, one_line_error

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
        result = loadgen(
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
    missing = loadgen("sweep", "-m", "mixed", "-u", triton.grpc_url, "--db", db)
    assert missing.returncode == 2 and "--shape TOKENS" in one_line_error(missing)
    result = loadgen(
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
    result = loadgen(
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
    assert result.returncode == 0, result.stderr  # a failing request is data, not a crash
    requests, errors, reasons = _only_run(db)
    assert requests == 0 and errors > 0
    assert any("MASK [1, 2] must match TOKENS [1, 3]" in reason for reason in reasons)


def test_bad_input_files_are_one_line_errors(triton: EmbeddedServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": [{"INPUT0": [1.0, 2.0]}]}))
    result = loadgen("sweep", "-m", "identity", "-u", triton.grpc_url, "--input-data", str(bad), "--db", db)
    assert result.returncode == 2
    assert "2 values for input 'INPUT0', which needs 16" in one_line_error(result)
    nowhere = loadgen(
        "sweep", "-m", "identity", "-u", triton.grpc_url, "--input-data", "nope.json", "--db", db
    )
    assert nowhere.returncode == 2 and "--input-data must be random, zero or a data file" in one_line_error(
        nowhere
    )
