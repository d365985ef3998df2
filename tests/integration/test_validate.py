"""``--validate`` against the real server: deterministic models pass, the drifting one is caught."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analysis import load_run_data
from analysis.finding_kinds import Kind
from analysis.findings import run_findings
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore, StepRecord
from tests.cli import loadgen_here, one_line_error

QUICK = ["-p", "600", "--warmup", "300", "-r", "3", "--no-metrics", "-q"]


def _steps(db: str) -> list[StepRecord]:
    with RunStore(db) as store:
        (run,) = store.list_runs()
        return store.steps(run.id)


def test_drifting_model_is_exact_alone_and_caught_under_load(triton: EmbeddedServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    result = loadgen_here(
        "sweep",
        "-m",
        "drifting",
        "-u",
        triton.grpc_url,
        "--concurrency",
        "1,8",
        "--validate",
        *QUICK,
        "--db",
        db,
    )
    assert result.returncode == 3, result.stderr
    assert "answers differ from the reference" in result.stderr and "swapped/stale" in result.stderr
    alone, busy = _steps(db)
    # alone: every answer checked and equal to the reference taken at concurrency 1
    assert alone.validated_count == alone.request_count > 0
    assert alone.mismatch_count == 0 and alone.max_abs_diff == 0.0
    # busy: batched executions drift by 1e-3 (beyond FP32's 1e-4) and swap two answers
    assert busy.validated_count == busy.request_count > 0
    assert busy.mismatch_count is not None and busy.swapped_count is not None
    assert 0 < busy.mismatch_count <= busy.validated_count
    assert 0 < busy.swapped_count < busy.mismatch_count
    assert busy.max_rel_diff is not None and busy.max_rel_diff >= 1e-3
    assert busy.validation is not None and busy.validation["outputs"] == {"OUTPUT0": busy.mismatch_count}
    # shown in the console table and in the report's findings
    assert "Mismatches" in result.stdout and "Swapped" in result.stdout
    data = load_run_data(db, busy.run_id)
    found = [f for f in run_findings(data.run, data.steps) if f.kind is Kind.MISMATCH]
    assert [f.step_index for f in found] == [1]
    assert "swapped/stale" in found[0].text


def test_a_looser_tolerance_accepts_the_drift_but_not_the_swaps(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    args = ["sweep", "-m", "drifting", "-u", triton.grpc_url, "--concurrency", "8", "--validate"]
    result = loadgen_here(*args, "--tolerance", "FP32=1e-2", *QUICK, "--db", db)
    assert result.returncode == 3, result.stderr
    (step,) = _steps(db)
    assert step.mismatch_count is not None and step.mismatch_count > 0
    assert step.swapped_count == step.mismatch_count  # only swapped answers remain wrong


@pytest.mark.parametrize(
    ("model", "protocol"), [("identity", "grpc"), ("identity", "http"), ("resnet", "grpc"), ("mixed", "http")]
)
def test_deterministic_models_have_no_mismatch(
    triton: EmbeddedServer, tmp_path: Path, model: str, protocol: str
) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    url = triton.http_url if protocol == "http" else triton.grpc_url
    extra = ["--shape", "TOKENS:5", "--shape", "MASK:5"] if model == "mixed" else []
    result = loadgen_here(
        "sweep",
        "-m",
        model,
        "-i",
        protocol,
        "-u",
        url,
        "--concurrency",
        "4",
        "--validate",
        *extra,
        *QUICK,
        "--db",
        db,
    )
    assert result.returncode == 0, result.stderr
    (step,) = _steps(db)
    assert step.error_count == 0, step.errors
    assert step.validated_count == step.request_count > 0
    assert step.mismatch_count == 0 and step.swapped_count == 0


def test_open_loop_answers_are_checked(triton: EmbeddedServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    result = loadgen_here(
        "sweep",
        "-m",
        "identity",
        "-u",
        triton.grpc_url,
        "--request-rate",
        "200",
        "--validate",
        *QUICK,
        "--db",
        db,
    )
    assert result.returncode == 0, result.stderr
    (step,) = _steps(db)
    assert step.validated_count == step.request_count > 0 and step.mismatch_count == 0


def _identity_file(tmp_path: Path, wrong_entry: int | None) -> Path:
    rng = np.random.default_rng(7)
    inputs = [rng.random(16).astype(np.float32) for _ in range(4)]
    expected = [x.copy() for x in inputs]
    if wrong_entry is not None:
        expected[wrong_entry][3] += 1.0
    path = tmp_path / "identity.json"
    path.write_text(
        json.dumps(
            {
                "data": [{"INPUT0": x.tolist()} for x in inputs],
                "validation_data": [{"OUTPUT0": {"content": y.tolist(), "shape": [16]}} for y in expected],
            }
        )
    )
    return path


def test_validation_data_of_the_input_file_is_the_reference(triton: EmbeddedServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/good.db"
    args = ["sweep", "-m", "identity", "-u", triton.grpc_url, "--concurrency", "2", "--validate", *QUICK]
    result = loadgen_here(*args, "--input-data", str(_identity_file(tmp_path, None)), "--db", db)
    assert result.returncode == 0, result.stderr
    (step,) = _steps(db)
    assert step.validated_count and step.mismatch_count == 0

    db = f"sqlite:///{tmp_path}/bad.db"
    result = loadgen_here(*args, "--input-data", str(_identity_file(tmp_path, 2)), "--db", db)
    assert result.returncode == 3, result.stderr
    (step,) = _steps(db)
    # one request in four has a wrong expectation: a quarter of the answers (the cycle is exact)
    assert step.mismatch_count is not None and step.validated_count is not None
    assert step.mismatch_count == pytest.approx(step.validated_count / 4, abs=4)
    assert step.swapped_count == 0


def test_bad_validation_input_is_a_one_line_error(triton: EmbeddedServer, tmp_path: Path) -> None:
    args = [
        "sweep",
        "-m",
        "identity",
        "-u",
        triton.grpc_url,
        "--validate",
        *QUICK,
        "--db",
        f"sqlite:///{tmp_path}/r.db",
    ]
    result = loadgen_here(*args, "--tolerance", "INT32=1")
    assert result.returncode == 2
    assert "bad --tolerance 'INT32=1'" in one_line_error(result)
    path = tmp_path / "short.json"
    path.write_text(
        json.dumps({"data": [{"INPUT0": [0.0] * 16}] * 2, "validation_data": [{"OUTPUT0": [0.0] * 16}]})
    )
    result = loadgen_here(*args, "--input-data", str(path))
    assert result.returncode == 2
    assert "validation_data needs one entry per data entry (2), found 1" in one_line_error(result)
    path.write_text(json.dumps({"data": [{"INPUT0": [0.0] * 16}], "validation_data": [{"NOPE": [0.0]}]}))
    result = loadgen_here(*args, "--input-data", str(path))
    assert result.returncode == 2
    assert "names unknown output(s) NOPE; the model has: OUTPUT0" in one_line_error(result)
