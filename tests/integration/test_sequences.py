"""Sequence (stateful) models against the real server: ``accumulate`` keeps a running sum per
correlation id behind Triton's sequence batcher (oldest strategy, one instance)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import pytest

from loadgen.config import MeasurementSettings, SweepSettings
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore, StepRecord
from tests.cli import loadgen_here, one_line_error, start_loadgen
from tests.sweeps import swept

MEASURE = MeasurementSettings(
    measurement_interval_ms=700, warmup_ms=150, max_windows=3, stability_percentage=50
)
QUICK = ["-p", "700", "--warmup", "150", "-r", "3", "--no-metrics", "-q"]
SEQUENCE_TROUBLE = ("sequence", "CORRID", "correlation")
"""What Triton's log says when sequences collide or are left open (none of it may appear)."""


def _log_from(triton: EmbeddedServer) -> int:
    assert triton.log_path is not None
    return triton.log_path.stat().st_size


def _new_trouble(triton: EmbeddedServer, offset: int) -> list[str]:
    assert triton.log_path is not None
    with triton.log_path.open(encoding="utf-8", errors="replace") as log:
        log.seek(offset)
        return [line for line in log if line[:1] in "EW" and any(word in line for word in SEQUENCE_TROUBLE)]


def _settings(
    triton: EmbeddedServer, protocol: Literal["grpc", "http"] = "grpc", **given: Any
) -> SweepSettings:
    """accumulate in sequences of 10 (+-20 %) at concurrency 1, 4, 16, unless ``given`` says otherwise."""
    fields: dict[str, Any] = {
        "model": "accumulate",
        "levels": (1, 4, 16),
        "protocol": protocol,
        "url": triton.grpc_url if protocol == "grpc" else triton.http_url,
        "metrics_url": "",
        "sequence_length": 10,
        "measurement": MEASURE,
    }
    return SweepSettings(**{**fields, **given})


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sequences_keep_their_state_at_every_concurrency_without_a_single_error(
    triton: EmbeddedServer, tmp_path: Path, protocol: Literal["grpc", "http"]
) -> None:
    """Every answer is checked against its step's reference (its stream run alone): a running
    sum only matches if the sequence's state was its own from its start."""
    offset = _log_from(triton)
    levels = (1, 4, 16) if protocol == "grpc" else (4,)  # HTTP: the transport, at one level
    steps = swept(_settings(triton, protocol, levels=levels, validate=True), f"sqlite:///{tmp_path}/runs.db")
    assert [s.concurrency for s in steps] == list(levels)
    for step in steps:
        assert step.error_count == 0 and step.request_count > 0, step.errors
        assert step.validated_count == step.request_count and step.mismatch_count == 0, step.validation
        tally = step.sequences()
        assert tally is not None and tally.ended > 0 and step.sequence_count == tally.ended
        placed = tally.start.count + tally.middle.count + tally.end.count
        assert placed == step.request_count
        assert tally.start.count == pytest.approx(placed / 10, rel=0.25)  # 10 requests a sequence (+-20 %)
    assert steps[-1].throughput >= steps[0].throughput  # sequences batch together: more in flight, more done
    assert _new_trouble(triton, offset) == []


def test_state_crossed_between_sequences_is_caught_naming_the_sequence_and_step(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    """accumulate_crossed keeps one sum per id parity: right alone (the references), wrong as soon
    as two sequences of one parity run at once."""
    settings = _settings(triton, model="accumulate_crossed", levels=(4,), validate=True)
    (step,) = swept(settings, f"sqlite:///{tmp_path}/runs.db")
    assert step.error_count == 0 and step.validated_count == step.request_count > 0
    assert step.mismatch_count is not None and step.mismatch_count >= 0.3 * step.request_count
    assert step.validation is not None and step.validation["outputs"] == {"SUM": step.mismatch_count}
    example = step.validation["example"]
    assert re.fullmatch(
        r"sequence \d+, step \d+: output SUM (differs|equals the reference of step \d+)", example
    )


def _two_at_once(triton: EmbeddedServer, db: str, ranges: tuple[str, str]) -> list[StepRecord]:
    """Two loadgen processes on accumulate at concurrency 8 at the same time, each given a range."""
    args = ["sweep", "-m", "accumulate", "-u", triton.grpc_url, "--concurrency", "8", *QUICK, "--db", db]
    running = [start_loadgen(*args, "--sequence-id-range", ids) for ids in ranges]
    errors = [proc.communicate(timeout=120)[1] for proc in running]  # both ended before any assert
    assert [proc.returncode for proc in running] == [0, 0], errors
    with RunStore(db) as store:
        runs = store.list_runs()
        assert len(runs) == 2 and all(run.settings["sequence_id_range"] for run in runs)
        return [step for run in runs for step in store.steps(run.id)]


def test_two_loadgens_with_disjoint_id_ranges_share_a_server_without_a_sequence_error(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    offset = _log_from(triton)
    apart = _two_at_once(triton, f"sqlite:///{tmp_path}/apart.db", ("1000:1008", "2000:2008"))
    assert all(step.error_count == 0 and step.request_count > 0 for step in apart), [s.errors for s in apart]
    assert _new_trouble(triton, offset) == []
    # the same range twice: each takes over the other's sequences (server#3103)
    shared = _two_at_once(triton, f"sqlite:///{tmp_path}/shared.db", ("1:9", "1:9"))
    reasons = [reason for step in shared for reason in step.errors]
    assert all(step.error_count > 0 for step in shared)
    assert any("must specify the START flag on the first request" in r for r in reasons), reasons


def test_sequence_options_and_models_are_checked_in_one_line(triton: EmbeddedServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/runs.db"
    stateless = loadgen_here(
        "sweep", "-m", "identity", "--sequence-length", "5", "-u", triton.grpc_url, "--db", db
    )
    assert stateless.returncode == 2
    assert "model 'identity' has no sequence batching: --sequence-length applies" in one_line_error(stateless)
    zero = loadgen_here(
        "sweep", "-m", "accumulate", "--sequence-length", "0", "-u", triton.grpc_url, "--db", db
    )
    assert zero.returncode == 2 and "--sequence-length must be >= 1, got 0" in one_line_error(zero)
    narrow = loadgen_here(
        "sweep", "-m", "accumulate", "--concurrency", "1,8", "--sequence-id-range", "5:9",
        "-u", triton.grpc_url, "--db", db,
    )  # fmt: skip
    assert narrow.returncode == 2
    assert "--sequence-id-range holds 4 id(s), fewer than the highest concurrency, 8" in one_line_error(
        narrow
    )


@pytest.mark.parametrize(
    ("protocol", "serial"), [("grpc", False), ("http", True)], ids=["grpc-on-schedule", "http-serial"]
)
def test_open_loop_spreads_its_sends_over_the_active_sequences(
    triton: EmbeddedServer, tmp_path: Path, protocol: Literal["grpc", "http"], serial: bool
) -> None:
    """200 requests/s over 6 sequences of 10: every answer still matches its step's reference,
    on schedule (several of a sequence in flight, in order on one HTTP/2 connection) or serially."""
    settings = _settings(
        triton,
        protocol,
        levels=(200.0,),
        scenario="request_rate",
        num_of_sequences=6,
        serial_sequences=serial,
        validate=True,
    )
    (step,) = swept(settings, f"sqlite:///{tmp_path}/runs.db")
    assert step.error_count == 0 and step.request_count > 0, step.errors
    assert step.validated_count == step.request_count and step.mismatch_count == 0, step.validation
    assert step.throughput == pytest.approx(200.0, rel=0.1)
    tally = step.sequences()
    assert tally is not None and tally.ended == pytest.approx(step.request_count / 10, rel=0.3)


def test_workers_split_the_id_range_and_every_sequence_keeps_its_state(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    """Two worker processes, 4 sequences each, ids from halves of 1:9 (8 ids for 8 sequences: one
    id shared would show as a Triton error or a wrong sum)."""
    settings = _settings(triton, levels=(8,), workers=2, sequence_id_range=(1, 9), validate=True)
    (step,) = swept(settings, f"sqlite:///{tmp_path}/runs.db")
    assert step.error_count == 0 and step.request_count > 0, step.errors
    assert step.validated_count == step.request_count and step.mismatch_count == 0, step.validation
    assert step.sequence_count is not None and step.sequence_count > 0
    narrow = loadgen_here(
        "sweep", "-m", "accumulate", "--concurrency", "8", "--workers", "3", "--sequence-id-range", "1:9",
        "-u", triton.grpc_url, "--db", f"sqlite:///{tmp_path}/runs.db",
    )  # fmt: skip
    assert narrow.returncode == 2 and "split between 3 workers" in one_line_error(narrow)


def test_perf_analyzers_sequence_streams_each_make_a_sequence(triton: EmbeddedServer, tmp_path: Path) -> None:
    """Input data as streams (a list of entries per sequence): each sequence runs its stream, whole,
    the streams taken in turn; every answer is checked against its stream run alone."""
    data = tmp_path / "streams.json"
    streams = [[{"INPUT": [v]} for v in (1, 2, 3)], [{"INPUT": [v]} for v in (10, 20, 30, 40, 50)]]
    data.write_text(json.dumps({"data": streams}))
    settings = _settings(triton, levels=(4,), input_data=str(data), sequence_length=None, validate=True)
    (step,) = swept(settings, f"sqlite:///{tmp_path}/runs.db")
    assert (
        step.error_count == 0 and step.validated_count == step.request_count > 0 and step.mismatch_count == 0
    )
    tally = step.sequences()
    assert tally is not None
    # sequences of 3 and 5 in turn: 2 of 8 requests start one, 2 end one, 4 are in the middle
    assert tally.start.count == pytest.approx(step.request_count / 4, rel=0.15)
    assert tally.middle.count == pytest.approx(step.request_count / 2, rel=0.15)
    stateless = tmp_path / "identity-streams.json"
    stateless.write_text(json.dumps({"data": [[{"INPUT0": [0.0] * 16}] * 2]}))
    flat = loadgen_here(
        "sweep", "-m", "identity", "--input-data", str(stateless), "-u", triton.grpc_url,
        "--db", f"sqlite:///{tmp_path}/runs.db",
    )  # fmt: skip
    assert flat.returncode == 2
    assert "model 'identity' has no sequence batching: --input-data with sequence streams" in one_line_error(
        flat
    )
