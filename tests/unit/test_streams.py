"""Streams, without a server: what a streamed request records, exact merging, the settings' rules,
and the stream messages Triton sends (bytes as the gRPC stream carries them)."""

from __future__ import annotations

import pickle

import pytest
from tritonclient.grpc import service_pb2

from loadgen.config import SweepSettings
from loadgen.engine.recorder import Window, merge_windows
from loadgen.errors import SettingsError
from loadgen.tallies import StreamTally
from loadgen.transports.base import InferRequestSpec, InputTensor
from loadgen.transports.grpc_codec import EMPTY_FINAL, FINAL_FLAG, build_request, read_stream_response

MS = 1_000_000


def test_a_streamed_request_records_its_first_response_every_gap_and_its_count() -> None:
    tally = StreamTally()
    tally.record(0, [20 * MS, 25 * MS, 31 * MS])
    tally.record(100 * MS, [])  # a stream that ended with no response
    assert tally.responses == 3
    assert tally.first.count == 1 and tally.first.percentile_us(50) == pytest.approx(20_000, rel=1e-3)
    assert sorted(v for v, _, _ in tally.gaps.iter_buckets()) and tally.gaps.count == 2
    assert tally.gaps.min_us == pytest.approx(5_000, rel=1e-3) and tally.gaps.max_us == pytest.approx(
        6_000, rel=1e-3
    )
    assert tally.counts.count == 2 and tally.counts.min_us == 0 and tally.counts.max_us == 3
    assert tally.spacing.count == 1  # (31 - 20) / 2 ms per response after the first; none for 0
    assert tally.spacing.percentile_us(50) == pytest.approx(5_500, rel=1e-3)


def test_windows_of_streams_merge_exactly_across_workers() -> None:
    one, two = Window(), Window()
    one.record_stream(0, 40 * MS, [10 * MS, 20 * MS])
    two.record_stream(0, 90 * MS, [30 * MS, 60 * MS, 90 * MS])
    two = pickle.loads(pickle.dumps(two))  # as a worker's window crosses its pipe
    merged = merge_windows([one, two])
    assert merged.requests == 2 and merged.histogram.count == 2
    assert merged.stream is not None and merged.stream.responses == 5
    expected = StreamTally.merged([one.stream, two.stream])
    assert expected is not None
    assert merged.stream.first == expected.first and merged.stream.gaps == expected.gaps
    assert merged.stream.gaps.count == 3 and merged.stream.counts.count == 2


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"validate": True, "cancel_after_responses": 2}, "a cancelled one has nothing to check"),
    ],
)
def test_streaming_says_what_it_does_not_do_yet(given: dict[str, object], said: str) -> None:
    with pytest.raises(SettingsError, match=said):
        SweepSettings(model="m", levels=given.pop("levels", (1,)), streaming=True, **given)  # type: ignore[arg-type]


def _message(**parts: object) -> bytes:
    data: bytes = service_pb2.ModelStreamInferResponse(**parts).SerializeToString()
    return data


def test_stream_messages_read_as_triton_sends_them() -> None:
    token = service_pb2.ModelInferResponse(model_name="m")
    token.outputs.add(name="TOKEN", datatype="BYTES", shape=[1])
    token.parameters[FINAL_FLAG].bool_param = False
    assert read_stream_response(_message(infer_response=token)) == (None, 1, False)
    token.parameters[FINAL_FLAG].bool_param = True
    assert read_stream_response(_message(infer_response=token)) == (None, 1, True)
    token.outputs.add(name="TOKENS", datatype="BYTES", shape=[1, 3])  # --token-output TOKENS
    assert read_stream_response(_message(infer_response=token), "TOKENS") == (None, 3, True)
    assert read_stream_response(_message(infer_response=token), "MISSING") == (None, 0, True)
    empty_final = service_pb2.ModelInferResponse(model_name="m")
    empty_final.parameters[FINAL_FLAG].bool_param = True
    assert read_stream_response(_message(infer_response=empty_final)) == (None, -1, True)
    error = read_stream_response(_message(error_message="failed after 1 responses"))
    assert error == ("INTERNAL: failed after 1 responses", -1, True)
    assert read_stream_response(b"\xff\xff")[0] is not None


def test_a_stream_request_asks_for_the_empty_final_response() -> None:
    spec = InferRequestSpec("m", (InputTensor("X", "INT32", (1,), b"\x01\x00\x00\x00"),))
    streamed = service_pb2.ModelInferRequest.FromString(build_request(spec, stream=True))
    assert streamed.parameters[EMPTY_FINAL].bool_param is True
    assert EMPTY_FINAL not in service_pb2.ModelInferRequest.FromString(build_request(spec)).parameters


def test_a_stream_is_checked_whole_and_a_mixed_in_response_is_a_swap() -> None:
    from loadgen.tallies import ValidationTally
    from loadgen.transports.base import OutputTensor
    from loadgen.validation import Validator, flatten_stream

    def token(text: str) -> dict[str, OutputTensor]:
        return {
            "TOKEN": OutputTensor("TOKEN", "BYTES", (1,), len(text).to_bytes(4, "little") + text.encode())
        }

    streams = [[token(f"{stem}-{i}") for i in range(3)] for stem in ("aa", "bb")]
    validator = Validator([flatten_stream(s) for s in streams], streams=True)
    tally = ValidationTally()
    validator.check(0, flatten_stream(streams[0]), tally)
    assert (tally.checked, tally.mismatched) == (1, 0)
    validator.check(0, flatten_stream(streams[0][:2]), tally)  # a response short
    assert (tally.mismatched, tally.swapped) == (1, 0) and tally.outputs == {"TOKEN[2]": 1, "(responses)": 1}
    mixed = [streams[0][0], streams[1][1], streams[0][2]]  # the other request's second token
    validator.check(0, flatten_stream(mixed), tally)
    assert (tally.mismatched, tally.swapped) == (2, 1)
    fresh = ValidationTally()
    validator.check(0, flatten_stream(mixed), fresh)
    assert fresh.example == "request 0: output TOKEN[1] equals the reference of request 1"


def test_a_streams_request_timeout_bounds_its_silence_not_its_length() -> None:
    """Each message of a ModelStreamInfer call restarts the watchdog's clock (as over HTTP)."""
    import asyncio

    from loadgen.transports.grpc_h2 import _StreamReader

    class Stream:
        opened_at = 0.0

    async def feed() -> float:
        reader, stream = _StreamReader(), Stream()
        reader.stream = stream
        token = service_pb2.ModelInferResponse(model_name="m")
        token.outputs.add(name="TOKEN", datatype="BYTES", shape=[1])
        message = _message(infer_response=token)
        reader.feed(b"\x00" + len(message).to_bytes(4, "big") + message)
        assert len(reader.arrivals) == 1
        return stream.opened_at

    assert asyncio.run(feed()) > 0.0
