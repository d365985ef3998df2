"""Joining Triton's trace records to the client's send log, without a server: ids, children, the
parts of a request's time."""

from __future__ import annotations

import math
from typing import Any

import pytest

from loadgen.tracing import SendLog, join, read_traces, request_id
from loadgen.transports.base import ID_WIDTH


def _records(trace_id: int, stamps: dict[str, int], **meta: Any) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = [
        {"id": trace_id, "model_name": meta.pop("model", "m"), "model_version": 1, **meta}
    ]
    records += [{"id": trace_id, "timestamps": [{"name": name, "ns": ns}]} for name, ns in stamps.items()]
    return records


def _served(arrival: int, *, queue: int, compute: int, protocol: str = "GRPC") -> dict[str, int]:
    """Stamps (ns) of a request that arrives, waits ``queue``, computes ``compute``, leaves."""
    start = arrival + 1_000
    read = {"GRPC": "GRPC_WAITREAD_END", "HTTP": "HTTP_RECV_START"}[protocol]
    return {
        read: arrival,
        "REQUEST_START": start,
        "QUEUE_START": start,
        "COMPUTE_START": start + queue,
        "COMPUTE_INPUT_END": start + queue + 100,
        "COMPUTE_OUTPUT_START": start + queue + compute - 100,
        "COMPUTE_END": start + queue + compute,
        "REQUEST_END": start + queue + compute + 500,
        f"{protocol}_SEND_START": start + queue + compute + 1_000,
    }


def test_request_ids_are_fixed_width_and_unique_within_a_run() -> None:
    log = SendLog("ab12cd34", base=5)
    (i0, id0), (i1, id1) = log.next_id(), log.next_id()
    assert (i0, i1) == (0, 1) and id0 == b"ab12cd3400000005" and id1 == request_id("ab12cd34", 6)
    assert len(id0) == ID_WIDTH and log.end == 7


def test_traces_join_the_sends_answered_while_measuring() -> None:
    log = SendLog("ab12cd34", base=0)
    sends = [log.next_id() for _ in range(4)]
    log.answered(0, 1_000_000, 9_000_000)  # a warm-up send: before the first cut
    for cut in (10_000_000, 50_000_000):  # the warm-up ends, then one measured window
        log.cut(cut)
    log.answered(1, 10_000_000, 30_000_000)
    log.answered(3, 40_000_000, 45_000_000)
    log.keep_last(1)
    records = [
        *_records(1, _served(1_200_000, queue=0, compute=5_000_000), request_id=sends[0][1].decode()),
        *_records(
            2, _served(10_200_000, queue=12_000_000, compute=5_000_000), request_id=sends[1][1].decode()
        ),
        *_records(
            3,
            _served(40_100_000, queue=0, compute=3_000_000, protocol="HTTP"),
            request_id=sends[3][1].decode(),
        ),
        *_records(4, _served(50_000_000, queue=0, compute=1), request_id="ffffffff00000002"),  # another run
        *_records(5, _served(50_000_000, queue=0, compute=1), request_id="not-ours"),
    ]
    samples = join(read_traces(records), "ab12cd34", log)
    assert [s.trace_id for s in samples] == [2, 3]
    second = samples[0]
    assert second.client_us == 20_000 and second.queue_us == 12_000 and second.compute_us == 5_000
    assert second.compute_input_us == 0.1 and second.compute_output_us == 0.1
    assert second.server_us == pytest.approx(1 + 12_000 + 5_000 + 1) and second.outside_us == pytest.approx(
        20_000 - second.server_us
    )
    assert second.server_us <= second.client_us
    assert samples[1].server_us == pytest.approx(3_002)  # HTTP: receive start to send end


def test_an_ensembles_steps_add_up_to_its_request_and_keep_their_parent() -> None:
    log = SendLog("ab12cd34", base=100)
    index, rid = log.next_id()
    log.cut(0)
    log.cut(70_000_000)
    log.keep_last(3)  # fewer windows than asked for: all of them
    log.answered(index, 0, 60_000_000)
    top = {
        "GRPC_WAITREAD_END": 100_000,
        "REQUEST_START": 200_000,
        "QUEUE_START": 210_000,
        "REQUEST_END": 50_000_000,
        "GRPC_SEND_START": 50_100_000,
    }
    records = [
        *_records(7, top, model="pipeline", request_id=rid.decode()),
        *_records(
            8,
            _served(300_000, queue=1_000_000, compute=2_000_000),
            model="preprocess",
            request_id=rid.decode(),
            parent_id=7,
        ),
        *_records(
            9, _served(4_000_000, queue=3_000_000, compute=20_000_000), model="resnet", parent_id=7
        ),  # BLS: no id
        *_records(10, _served(9_000_000, queue=0, compute=1_000), model="inner", parent_id=9),
        *_records(11, _served(9_000_000, queue=0, compute=1_000), model="stray", parent_id=99),
    ]
    samples = {s.trace_id: s for s in join(read_traces(records), "ab12cd34", log)}
    assert sorted(samples) == [7, 8, 9, 10]
    assert (samples[8].parent_id, samples[9].parent_id, samples[10].parent_id) == (7, 7, 9)
    assert samples[9].model == "resnet" and samples[9].request_id == rid.decode()
    assert math.isnan(samples[8].client_us) and samples[8].queue_us == 1_000
    pipeline = samples[7]
    assert pipeline.queue_us == 4_000 and pipeline.compute_us == 22_000  # its two steps' sums
    assert pipeline.client_us == 60_000 and pipeline.server_us == 50_000


def test_tagged_requests_carry_their_id_and_nothing_else_changes() -> None:
    from tritonclient.grpc import service_pb2

    from loadgen.transports.base import InferRequestSpec, InputTensor
    from loadgen.transports.grpc_codec import TaggedMessage, build_request
    from loadgen.transports.http import HttpTransport

    spec = InferRequestSpec("m", (InputTensor("x", "FP32", (1, 2), b"\x00" * 8),))
    message = service_pb2.ModelInferRequest()
    message.ParseFromString(TaggedMessage(build_request(spec)).request(b"ab12cd3400000007"))
    assert message.id == "ab12cd3400000007" and message.model_name == "m"
    http = HttpTransport("127.0.0.1:8000")
    plain, tagged = http.prepare(spec), http.prepare_tagged(spec).request(b"ab12cd3400000007")
    assert b'{"id":"ab12cd3400000007","inputs"' in tagged
    head, _, body = tagged.partition(b"\r\n\r\n")
    assert int(head.split(b"\r\nContent-Length: ")[1].split(b"\r\n")[0]) == len(body)
    assert len(tagged) == len(plain) + len(b'"id":"ab12cd3400000007",')


def test_the_tail_says_where_the_slowest_requests_spent_their_time() -> None:
    import numpy as np
    import pandas as pd

    from analysis.tail import overhead_findings, tail_findings, tail_frame

    rng = np.random.default_rng(1)
    n = 2000
    queue = np.where(np.arange(n) % 50 == 0, 40_000.0, rng.uniform(0, 200, n))  # 2% wait 40 ms
    compute = rng.uniform(900, 1100, n)
    samples = pd.DataFrame(
        {
            "step_index": 0,
            "parent_id": np.nan,
            "client_us": queue + compute + 300,
            "server_us": queue + compute + 50,
            "queue_us": queue,
            "compute_us": compute,
        }
    )
    steps = pd.DataFrame(
        {
            "step_index": [0],
            "concurrency": [4],
            "request_rate": [np.nan],
            "throughput": [80.0],
            "untraced_throughput": [100.0],
        }
    )
    tail = tail_frame(samples, steps).set_index("group")
    assert list(tail.index) == ["median", "slowest 1%", "slowest 0.1%"]
    assert tail.loc["slowest 1%", "requests"] == 20 and float(str(tail.loc["median", "queue_us"])) < 200
    (found,) = tail_findings(tail.reset_index())
    assert found.text.startswith(
        "the p99 is queueing: 97% of the slowest 1% of requests' time is in the queue"
    )
    assert "at concurrency 4 (the median request's: 7%)" in found.text
    assert tail_frame(samples.head(99), steps).group.tolist() == ["median"]  # too few for a 1% group
    (costly,) = overhead_findings(steps, 10)
    assert "cost 20% of the throughput at concurrency 4" in costly.text


def test_nested_ensembles_add_up_from_the_innermost_and_only_kept_windows_join() -> None:
    log = SendLog("ab12cd34", base=0)
    first, rid = log.next_id()
    second, other = log.next_id()
    for cut in (0, 100_000_000, 200_000_000):  # two windows; the step keeps the last one
        log.cut(cut)
    log.closed = True
    log.cut(300_000_000)  # the untraced window's: not a measured one
    log.answered(first, 10_000_000, 20_000_000)
    log.answered(second, 110_000_000, 170_000_000)
    log.keep_last(1)
    bare = {"GRPC_WAITREAD_END": 111_000_000, "REQUEST_START": 112_000_000, "GRPC_SEND_START": 160_000_000}
    records = [
        *_records(1, {**bare, "GRPC_WAITREAD_END": 11_000_000}, model="outer", request_id=rid.decode()),
        *_records(2, bare, model="outer", request_id=other.decode()),
        *_records(3, bare, model="inner", parent_id=2),  # a nested ensemble: no stamps of its own
        *_records(4, _served(113_000_000, queue=2_000_000, compute=5_000_000), model="a", parent_id=3),
        *_records(5, _served(121_000_000, queue=1_000_000, compute=7_000_000), model="b", parent_id=3),
        *_records(6, _served(130_000_000, queue=0, compute=3_000_000), model="c", parent_id=2),
    ]
    samples = {s.trace_id: s for s in join(read_traces(records), "ab12cd34", log)}
    assert sorted(samples) == [2, 3, 4, 5, 6]  # the first send was in a window the step dropped
    assert (samples[3].queue_us, samples[3].compute_us) == (3_000, 12_000)
    assert (samples[2].queue_us, samples[2].compute_us) == (3_000, 15_000)
