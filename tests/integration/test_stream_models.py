"""The decoupled (streaming) demo models against the real server: token_stream's pacing, tokens,
queueing and cancellation, stream_sometimes_empty's streams with no response, stream_fails_midway's
error in the middle of a stream; and what a transport parses: the gRPC stream messages and the
generate extension's server-sent events. Timing checks estimate what noise only adds to (the
earliest first token, the median gap) and are tried again when a busy host fails them."""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc

from loadgen.server import EmbeddedServer

WAIT_S = 10.0  # for a stream to end: far above any stream here, reached only when one hangs


@dataclass
class Answer:
    """One request's responses (ModelInferResponse messages), with their arrival times."""

    sent: float
    times: list[float] = field(default_factory=list)
    responses: list[Any] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def ttft(self) -> float:
        return self.times[0] - self.sent

    @property
    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:], strict=False)]

    def final_flags(self) -> list[bool]:
        return [_final(r) for r in self.responses]

    def output(self, name: str) -> list[Any]:
        """The output's one value in each response that has it."""
        values = []
        for response in self.responses:
            result = grpcclient.InferResult(response)
            array = result.as_numpy(name)
            if array is not None:
                values.append(array.reshape(-1)[0])
        return values


def _final(response: Any) -> bool:
    return "triton_final_response" in response.parameters and bool(
        response.parameters["triton_final_response"].bool_param
    )


class Stream:
    """One gRPC stream (tritonclient's sync client), any number of requests told apart by id.

    An error response carries no request id through tritonclient, so errors are only listed:
    attribute them by sending one request at a time."""

    def __init__(self, url: str) -> None:
        self.client = grpcclient.InferenceServerClient(url)
        self.answers: dict[str, Answer] = {}
        self.errors: list[tuple[float, str]] = []
        self.error_seen = threading.Event()
        self._lock = threading.Lock()
        self.client.start_stream(callback=self._on_response)

    def close(self) -> None:
        self.client.stop_stream()
        self.client.close()

    def _on_response(self, result: Any, error: Any) -> None:
        now = time.perf_counter()
        with self._lock:
            if error is not None:
                self.errors.append((now, str(error)))
                self.error_seen.set()
                return
            response = result.get_response()
            answer = self.answers[response.id]
            answer.times.append(now)
            answer.responses.append(response)
            if _final(response):
                answer.done.set()

    def send(
        self,
        model: str,
        request_id: str,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        parameters: Mapping[str, int | bool] | None = None,
        *,
        empty_final: bool = True,
    ) -> Answer:
        tensors = []
        for name, value in inputs.items():
            datatype = "BYTES" if value.dtype == np.object_ else "INT32"
            tensor = grpcclient.InferInput(name, list(value.shape), datatype)
            tensor.set_data_from_numpy(value)
            tensors.append(tensor)
        with self._lock:
            answer = self.answers[request_id] = Answer(sent=time.perf_counter())
        self.client.async_stream_infer(
            model,
            tensors,
            request_id=request_id,
            parameters=dict(parameters) if parameters else None,
            enable_empty_final_response=empty_final,
        )
        return answer


@pytest.fixture
def stream(triton: EmbeddedServer) -> Iterator[Stream]:
    s = Stream(triton.grpc_url)
    try:
        yield s
    finally:
        s.close()


def _prompt(text: str, max_tokens: int | None = None) -> dict[str, np.ndarray[Any, Any]]:
    inputs = {"PROMPT": np.array([text.encode()], dtype=np.object_)}
    if max_tokens is not None:
        inputs["MAX_TOKENS"] = np.array([max_tokens], dtype=np.int32)
    return inputs


def _int(name: str, value: int) -> dict[str, np.ndarray[Any, Any]]:
    return {name: np.array([value], dtype=np.int32)}


def _wait(*answers: Answer) -> None:
    for answer in answers:
        assert answer.done.wait(WAIT_S), f"stream not ended: {len(answer.responses)} responses"


def _model_parameters(triton: EmbeddedServer, model: str) -> dict[str, str]:
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        config = client.get_model_config(model).config
    finally:
        client.close()
    assert config.model_transaction_policy.decoupled
    return {key: value.string_value for key, value in config.parameters.items()}


def _tokens(prompt: str, n: int) -> list[bytes]:
    return [f"{zlib.crc32(prompt.encode()):08x}-{i}".encode() for i in range(n)]


def _timed(attempt: Callable[[int], None], tries: int = 3) -> None:
    """Timing checks, tried again when they fail: a busy host only ever adds delay, so a model that
    paces right passes a calm attempt, and one that paces wrong fails every attempt."""
    for i in range(tries):
        try:
            attempt(i)
            return
        except AssertionError:
            if i == tries - 1:
                raise


# -- token_stream -------------------------------------------------------------------------------------
def test_token_stream_paces_tokens_after_the_first_token_delay(stream: Stream) -> None:
    # This request's own timings (request parameters), long enough that 10% is well above a busy
    # host's round trip: three requests one after the other. The first token can only be late
    # (noise adds), so the earliest one is checked; the gaps, on their median.
    first_ms, token_ms, n = 100, 10, 12

    def attempt(k: int) -> None:
        ttfts, gaps = [], []
        for i in range(3):
            prompt = f"the quick brown fox {i}"
            timings = {"first_token_ms": first_ms, "token_ms": token_ms}
            answer = stream.send("token_stream", f"r{k}-{i}", _prompt(prompt, n), timings)
            _wait(answer)
            assert answer.final_flags() == [False] * (n - 1) + [True]  # the flag rides on the last token
            assert answer.output("TOKEN") == _tokens(prompt, n)
            assert answer.output("INDEX") == list(range(n))
            ttfts.append(answer.ttft)
            gaps += answer.gaps
        assert min(ttfts) >= first_ms / 1e3 and min(ttfts) <= 1.1 * first_ms / 1e3, ttfts
        assert 0.9 * token_ms / 1e3 <= statistics.median(gaps) <= 1.1 * token_ms / 1e3, gaps

    _timed(attempt)
    assert not stream.errors


def test_token_stream_defaults_come_from_its_config(triton: EmbeddedServer, stream: Stream) -> None:
    params = _model_parameters(triton, "token_stream")
    n = int(params["MAX_TOKENS"])
    first_s, token_s = float(params["FIRST_TOKEN_MS"]) / 1e3, float(params["TOKEN_MS"]) / 1e3

    def attempt(k: int) -> None:
        answers = []
        for i in range(3):
            answers.append(stream.send("token_stream", f"d{k}-{i}", _prompt("hello")))  # no MAX_TOKENS
            _wait(answers[-1])
        for answer in answers:
            assert answer.output("TOKEN") == _tokens("hello", n)  # the same prompt, the same tokens
            assert answer.final_flags()[-1]
        ttft = min(a.ttft for a in answers)
        gap = statistics.median(g for a in answers for g in a.gaps)
        # short defaults: the bounds leave room for a few ms of round trip and scheduling
        assert first_s <= ttft <= 1.25 * first_s + 0.003, ttft
        assert 0.8 * token_s <= gap <= 1.2 * token_s, gap

    _timed(attempt)


def test_token_stream_queues_requests_beyond_max_active(triton: EmbeddedServer, stream: Stream) -> None:
    # MAX_ACTIVE + 2 requests at once: MAX_ACTIVE start now, the last two wait one whole generation
    first_ms, token_ms, n = 60, 10, 8
    active = int(_model_parameters(triton, "token_stream")["MAX_ACTIVE"])
    generation_s = (first_ms + (n - 1) * token_ms) / 1e3
    timings = {"first_token_ms": first_ms, "token_ms": token_ms}

    def attempt(k: int) -> None:
        answers = [
            stream.send("token_stream", f"q{k}-{i}", _prompt(f"q{i}", n), timings) for i in range(active + 2)
        ]
        _wait(*answers)
        for answer in answers:
            assert len(answer.responses) == n and answer.final_flags()[-1]
        ttfts = sorted(a.ttft for a in answers)
        early, late = ttfts[:active], ttfts[active:]
        assert first_ms / 1e3 <= early[0] <= 1.25 * first_ms / 1e3, ttfts
        # the late ones start when the first generations end: about one generation later
        delay = statistics.median(late) - statistics.median(early)
        assert 0.85 * generation_s <= delay <= 1.25 * generation_s, ttfts

    _timed(attempt)


def test_token_stream_frees_its_workers_when_streams_are_cancelled(triton: EmbeddedServer) -> None:
    # MAX_ACTIVE 20-second generations, cancelled (gRPC) after their first token: the next request
    # must not wait for them
    active = int(_model_parameters(triton, "token_stream")["MAX_ACTIVE"])
    first = Stream(triton.grpc_url)
    try:
        hogs = [
            first.send("token_stream", f"hog{i}", _prompt("x", 1000), {"token_ms": 20}) for i in range(active)
        ]
        deadline = time.monotonic() + WAIT_S
        while not all(h.responses for h in hogs) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(h.responses for h in hogs)
    finally:
        first.client.stop_stream(cancel_requests=True)
        first.client.close()
    second = Stream(triton.grpc_url)
    try:
        answer = second.send("token_stream", "next", _prompt("x", 2), {"first_token_ms": 1})
        _wait(answer)
        assert answer.ttft < 1.0  # a hog still streaming would hold it for ~20 s
    finally:
        second.close()


def test_token_stream_can_end_with_an_empty_final_response(stream: Stream) -> None:
    answer = stream.send("token_stream", "e", _prompt("x", 3), {"empty_final": True, "first_token_ms": 1})
    _wait(answer)
    assert answer.final_flags() == [False, False, False, True]
    assert answer.output("INDEX") == [0, 1, 2]  # the final response has no outputs
    assert not answer.responses[-1].outputs
    zero = stream.send("token_stream", "z", _prompt("x", 0), {"first_token_ms": 1})
    _wait(zero)
    assert zero.final_flags() == [True] and not zero.responses[0].outputs


def test_token_stream_rejects_a_negative_max_tokens(stream: Stream) -> None:
    stream.send("token_stream", "neg", _prompt("x", -1))
    assert stream.error_seen.wait(WAIT_S)
    assert "MAX_TOKENS must be >= 0" in stream.errors[0][1]


# -- stream_sometimes_empty ---------------------------------------------------------------------------
def test_an_empty_stream_sends_only_an_empty_final_response(stream: Stream) -> None:
    empty = stream.send("stream_sometimes_empty", "empty", _int("COUNT", 0))
    full = stream.send("stream_sometimes_empty", "full", _int("COUNT", 3))
    _wait(empty, full)
    assert empty.final_flags() == [True]
    assert not empty.responses[0].outputs and empty.output("INDEX") == []
    assert full.final_flags() == [False, False, True] and full.output("INDEX") == [0, 1, 2]
    assert not stream.errors


def test_an_empty_stream_without_empty_final_responses_sends_nothing(stream: Stream) -> None:
    # Triton drops a final flag without a response unless the client asked for empty finals: such a
    # request is never answered, and a client that did not ask cannot tell when it ended.
    silent = stream.send("stream_sometimes_empty", "silent", _int("COUNT", 0), empty_final=False)
    marker = stream.send("stream_sometimes_empty", "marker", _int("COUNT", 1))
    _wait(marker)
    time.sleep(0.1)  # well past the empty stream's 10 ms
    assert silent.responses == [] and not stream.errors


# -- stream_fails_midway ------------------------------------------------------------------------------
def test_a_stream_fails_after_its_good_responses(stream: Stream) -> None:
    answer = stream.send("stream_fails_midway", "f", {**_int("FAIL_AFTER", 3), **_int("COUNT", 8)})
    assert stream.error_seen.wait(WAIT_S)
    time.sleep(0.1)  # nothing may follow the error
    assert answer.output("INDEX") == [0, 1, 2]
    assert answer.final_flags() == [False, False, False]  # the final flag came with the error
    ((at, message),) = stream.errors
    assert "failed after 3 responses" in message and at > answer.times[-1]


def test_a_stream_that_never_fails(stream: Stream) -> None:
    answer = stream.send("stream_fails_midway", "ok", _int("FAIL_AFTER", -1))  # COUNT from the config
    _wait(answer)
    assert answer.output("INDEX") == list(range(8)) and answer.final_flags()[-1]
    assert not stream.errors


# -- what transports parse: the gRPC messages and the generate extension's server-sent events ---------
def _stream_messages(triton: EmbeddedServer, request: Any) -> list[Any]:
    """Every ModelStreamInferResponse of one request on a raw gRPC stream, until the final one."""
    messages = []
    with grpc.insecure_channel(triton.grpc_url) as channel:
        call = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(
            iter([request]), timeout=WAIT_S
        )
        for message in call:
            messages.append(message)
            if _final(message.infer_response):
                call.cancel()
                break
    return messages


def _request(model: str, name: str, value: int, *, empty_final: bool) -> Any:
    request = service_pb2.ModelInferRequest(model_name=model, id="wire")
    request.inputs.add(name=name, datatype="INT32", shape=[1])
    request.raw_input_contents.append(np.array([value], dtype=np.int32).tobytes())
    if empty_final:
        request.parameters["triton_enable_empty_final_response"].bool_param = True
    return request


def test_grpc_messages_of_empty_final_and_error_responses(triton: EmbeddedServer) -> None:
    # every message names its request and says whether it is the last, errors included
    (empty,) = _stream_messages(triton, _request("stream_sometimes_empty", "COUNT", 0, empty_final=True))
    assert empty.error_message == "" and empty.infer_response.id == "wire"
    assert _final(empty.infer_response) and not empty.infer_response.outputs
    for empty_final in (True, False):  # an error is sent either way, with the final flag
        good, error = _stream_messages(
            triton, _request("stream_fails_midway", "FAIL_AFTER", 1, empty_final=empty_final)
        )
        assert not _final(good.infer_response) and good.error_message == ""
        assert error.error_message == "failed after 1 responses" and error.infer_response.id == "wire"
        assert _final(error.infer_response) and not error.infer_response.outputs


def _generate_stream(triton: EmbeddedServer, model: str, body: dict[str, Any]) -> bytes:
    host, port = triton.http_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=WAIT_S)
    try:
        connection.request("POST", f"/v2/models/{model}/generate_stream", body=json.dumps(body))
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type") == "text/event-stream; charset=utf-8"
        return response.read()
    finally:
        connection.close()


def test_generate_stream_sends_one_event_per_response(triton: EmbeddedServer) -> None:
    # Triton 2.51's generate extension: the JSON body's keys are inputs (scalars for shape [1]) or
    # request parameters; each response is a "data:" event of its outputs; an empty final response
    # sends nothing, an error is an event of its own; the stream ends when the body does.
    body = _generate_stream(triton, "token_stream", {"PROMPT": "hi", "MAX_TOKENS": 2, "empty_final": True})
    stem = f"{zlib.crc32(b'hi'):08x}"
    assert body == b"".join(
        b"data: "
        + json.dumps(
            {"INDEX": i, "TOKEN": f"{stem}-{i}", "model_name": "token_stream", "model_version": "1"},
            separators=(",", ":"),
        ).encode()
        + b"\n\n"
        for i in range(2)
    )
    assert _generate_stream(triton, "stream_sometimes_empty", {"COUNT": 0}) == b""
    failed = _generate_stream(triton, "stream_fails_midway", {"FAIL_AFTER": 1, "COUNT": 3})
    assert failed == (
        b'data: {"INDEX":0,"model_name":"stream_fails_midway","model_version":"1"}\n\n'
        b'data: {"error":"failed after 1 responses"}\n\n'
    )
