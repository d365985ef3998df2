"""Sequences of a stateful model: ids, lengths, flags and the requests that end open sequences."""

from __future__ import annotations

import asyncio
import json

import pytest
from tritonclient.grpc import service_pb2

from loadgen.config import SweepSettings
from loadgen.engine.sequences import (
    END,
    MIDDLE,
    START,
    Cursor,
    OpenSequences,
    SequenceIds,
    SequencePlan,
    Sequences,
)
from loadgen.errors import ConfigError, SettingsError
from loadgen.sequence_setup import sequence_plan, string_ids
from loadgen.transports.base import InferRequestSpec, InputTensor
from loadgen.transports.grpc_codec import MessageSequence, build_request
from loadgen.transports.http import _HttpSequence


class Recorded:
    """A template that says what each send asked for."""

    def __init__(self, index: int) -> None:
        self.index = index

    def request(self, sequence_id: int | str, start: bool, end: bool) -> tuple[int, int | str, bool, bool]:
        return self.index, sequence_id, start, end


def _plan(**given: object) -> SequencePlan:
    fields: dict[str, object] = {
        "streams": ((0, 1, 2),),
        "length": 4,
        "variation_pct": 0.0,
        "own_lengths": False,
        "id_start": 10,
        "id_end": 13,
        "string_ids": False,
    }
    fields.update(given)
    return SequencePlan(**fields)  # type: ignore[arg-type]


def _sends(cursor: Cursor, n: int) -> list[tuple[object, int, int]]:
    return [cursor.next() for _ in range(n)]


def test_a_sequence_starts_runs_its_length_and_ends_then_the_next_takes_a_new_id() -> None:
    sequences = Sequences(_plan(), [Recorded(i) for i in range(3)])
    sends = _sends(sequences.cursor(0), 8)
    assert [prepared for prepared, _, _ in sends] == [
        (0, 10, True, False), (1, 10, False, False), (2, 10, False, False), (0, 10, False, True),
        (0, 11, True, False), (1, 11, False, False), (2, 11, False, False), (0, 11, False, True),
    ]  # fmt: skip
    assert [where for _, where, _ in sends] == [START, MIDDLE, MIDDLE, END] * 2
    assert sequences.ids.in_use == {11}  # the first freed when the second began; the second held


def test_ids_go_round_robin_over_the_range_and_skip_those_in_use() -> None:
    ids = SequenceIds(10, 13)
    assert [ids.take() for _ in range(3)] == [10, 11, 12]
    ids.release(11)
    assert ids.take() == 11  # 10 and 12 still in use: the next free one
    with pytest.raises(RuntimeError, match="all 3 sequence ids are in use"):
        ids.take()


def test_slots_never_share_an_id_and_string_ids_are_text() -> None:
    sequences = Sequences(_plan(string_ids=True, length=2), [Recorded(i) for i in range(3)])
    first, second = sequences.cursor(0), sequences.cursor(1)
    (a, _, _), (b, _, _) = first.next(), second.next()
    assert (a[1], b[1]) == ("10", "11")
    first.next()  # ends 10
    (c, _, _) = first.next()
    assert c[1] == "12" and c[2] is True


def test_lengths_vary_within_the_percentage_and_never_below_one() -> None:
    sequences = Sequences(_plan(length=10, variation_pct=20.0, id_end=10**6), [Recorded(0)])
    lengths = [sequences.begin()[3] for _ in range(2000)]
    assert set(lengths) == {8, 9, 10, 11, 12}
    short = Sequences(_plan(length=1, variation_pct=100.0, id_end=10**6), [Recorded(0)])
    assert {short.begin()[3] for _ in range(200)} == {1, 2}  # 1 +- 1, never 0


def test_open_sequences_are_ended_by_one_request_each() -> None:
    sequences = Sequences(_plan(), [Recorded(i) for i in range(3)])
    _sends(sequences.cursor(0), 2)  # mid-sequence
    _sends(sequences.cursor(1), 4)  # ended exactly
    (end,) = sequences.open_ends()
    assert end == (2, 10, False, True) and sequences.ids.in_use == {10, 11}  # held until a next begins


def test_grpc_sequence_requests_carry_typed_ids_and_flags_after_the_message_built_once() -> None:
    spec = InferRequestSpec(
        "m", (InputTensor("X", "INT32", (1,), b"\x01\x00\x00\x00"),), parameters=(("k", 1),)
    )
    messages = MessageSequence(build_request(spec))
    for sequence_id, field in ((7, "int64_param"), (2**64 - 1, "uint64_param"), ("s-7", "string_param")):
        parsed = service_pb2.ModelInferRequest.FromString(messages.request(sequence_id, True, False))
        assert getattr(parsed.parameters["sequence_id"], field) == sequence_id
        assert (
            parsed.parameters["sequence_start"].bool_param
            and not parsed.parameters["sequence_end"].bool_param
        )
        assert parsed.parameters["k"].int64_param == 1 and parsed.raw_input_contents == [b"\x01\x00\x00\x00"]


def test_http_sequence_requests_carry_the_parameters_in_the_json_header() -> None:
    spec = InferRequestSpec("m", (InputTensor("X", "INT32", (1,), b"\x01\x00\x00\x00"),))
    wire = _HttpSequence(spec, "h", 1, {}).request("abc", False, True)
    head, _, body = wire.partition(b"\r\n\r\n")
    size = int(
        next(line for line in head.split(b"\r\n") if line.startswith(b"Inference-Header")).split(b": ")[1]
    )
    header = json.loads(body[:size])
    assert header["parameters"] == {"sequence_id": "abc", "sequence_start": False, "sequence_end": True}
    assert body[size:] == b"\x01\x00\x00\x00"


def _config(corrid_type: str | None) -> dict[str, object]:
    control = [{"kind": "CONTROL_SEQUENCE_CORRID", "data_type": corrid_type}] if corrid_type else []
    return {"sequence_batching": {"control_input": [{"name": "CORRID", "control": control}]}}


def test_the_plan_follows_the_models_config_and_refuses_what_is_not_there_yet() -> None:
    settings = SweepSettings(model="acc", levels=(2,), sequence_length=5, sequence_id_range=(100, 200))
    plan = sequence_plan(settings, _config("TYPE_UINT64"), 3)
    assert plan is not None and (plan.length, plan.variation_pct, plan.id_start, plan.id_end) == (
        5,
        20.0,
        100,
        200,
    )
    assert plan.streams == ((0, 1, 2),) and not plan.string_ids
    assert string_ids(_config("TYPE_STRING")) and not string_ids(_config(None))
    assert sequence_plan(SweepSettings(model="m", levels=(1,)), {}, 3) is None
    with pytest.raises(ConfigError, match="model 'm' has no sequence batching: --sequence-length applies"):
        sequence_plan(SweepSettings(model="m", levels=(1,), sequence_length=5), {}, 3)
    with pytest.raises(ConfigError, match="is a sequence model: --streaming is not supported"):
        sequence_plan(SweepSettings(model="acc", levels=(1,), streaming=True), _config(None), 3)


def test_an_id_range_smaller_than_the_sequences_in_flight_is_refused() -> None:
    with pytest.raises(SettingsError, match="holds 3 id.s., fewer than the highest concurrency, 4"):
        SweepSettings(model="m", levels=(1, 4), sequence_id_range=(1, 4))


def test_workers_get_disjoint_slices_of_the_id_range() -> None:
    plan = _plan(id_start=1, id_end=9)
    parts = [plan.part(i, 3, 1) for i in range(3)]
    assert [(p.id_start, p.id_end) for p in parts] == [(1, 3), (3, 6), (6, 9)]
    assert len({p.seed for p in parts}) == 3


def test_open_loop_sends_go_to_the_active_sequences_in_turn() -> None:
    sequences = Sequences(_plan(id_end=20, active=3, serial=True), [Recorded(i) for i in range(3)])
    spread = OpenSequences(sequences)
    order = [spread.next_cursor()[0] for _ in range(6)]
    assert order[:3] == sequences.cursors[:3] and order[3:] == order[:3]
    _, turn = spread.next_cursor()
    assert isinstance(turn, asyncio.Lock)  # serial: one request of a sequence at a time
    free_running = Sequences(_plan(id_end=20, active=3, serial=False), [Recorded(i) for i in range(3)])
    _, free = OpenSequences(free_running).next_cursor()
    assert not isinstance(free, asyncio.Lock)


def test_a_worker_pool_gives_each_worker_its_ids_and_its_share_of_the_active_sequences() -> None:
    from loadgen.engine.worker_engine import WorkerSetup, setup_part

    setup = WorkerSetup(
        protocol="grpc", url="x:1", requests=(), sequence_plan=_plan(id_start=1, id_end=9, active=4)
    )
    plans = [setup_part(setup, i, 3).sequence_plan for i in range(3)]
    assert [(p.id_start, p.id_end, p.active) for p in plans if p is not None] == [
        (1, 3, 2),
        (3, 6, 1),
        (6, 9, 1),
    ]
