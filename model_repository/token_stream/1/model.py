"""A decoupled model that streams tokens like an LLM server (see config.pbtxt).

execute() only reads each request and queues it; MAX_ACTIVE worker threads take requests in FIFO
order and stream them: token i of a generation that starts at t0 is sent at
t0 + FIRST_TOKEN_MS + i * TOKEN_MS, deadlines on one monotonic clock (sleeps never add up), and t0
is when a worker picks the request up, so a request that waits for a worker waits a whole
generation before its own first-token delay.

Inputs: PROMPT (BYTES [1]); MAX_TOKENS (INT32 [1], optional, else the MAX_TOKENS parameter; 0: no
token, only an empty final response after the first-token delay).
Outputs, one token per response: TOKEN = "<crc32(PROMPT) as 8 hex digits>-<i>", INDEX = i.

The final flag rides on the last token, unless an empty final response is asked for (the
EMPTY_FINAL parameter, or a request's "empty_final" parameter): then every token goes out without
it and a response with no outputs ends the stream. A client's triton_enable_empty_final_response
cannot choose this: Triton keeps that parameter to itself (a model never sees it) and uses it only
to decide whether an empty final response reaches a gRPC client at all (without it: dropped).

SWAP_EVERY (parameter, default 0: never) makes a faulty server for ``--validate``: every
SWAP_EVERY-th token of a generation carries the stem of another generation streaming at the same
time (if any), as a server that mixes up its concurrent requests would.

Request parameters (gRPC parameters, or keys of the generate extension's JSON body) override the
timings for that request: "first_token_ms", "token_ms" (numbers, milliseconds). A cancelled request
(gRPC) ends before its next token with an empty final response, freeing its worker.
"""

import collections
import contextlib
import json
import math
import threading
import time
import zlib

import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
_MAX_MS = 60_000.0


def _number_ms(value, what):
    """Milliseconds from a parameter (string in config.pbtxt; number or string in a request) -> ns."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number of milliseconds, not {value!r}")
    try:
        ms = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number of milliseconds, not {value!r}") from None
    if not (math.isfinite(ms) and 0 <= ms <= _MAX_MS):
        raise ValueError(f"{what} must be between 0 and {_MAX_MS:g} ms, not {value!r}")
    return int(ms * 1e6)


def _flag(value, what):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"{what} must be true or false, not {value!r}")


def _request_parameters(request):
    try:
        params = json.loads(request.parameters() or "{}")
    except ValueError:
        return {}
    return params if isinstance(params, dict) else {}


def _sleep_until(deadline_ns):
    remaining = deadline_ns - time.perf_counter_ns()
    if remaining > 0:
        time.sleep(remaining / 1e9)


def _error(message, code):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


class _Generation:
    __slots__ = ("sender", "stem", "max_tokens", "first_ns", "token_ns", "empty_final")

    def __init__(self, sender, stem, max_tokens, first_ns, token_ns, empty_final):
        self.sender = sender
        self.stem = stem
        self.max_tokens = max_tokens
        self.first_ns = first_ns
        self.token_ns = token_ns
        self.empty_final = empty_final


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(config):
            raise pb_utils.TritonModelException(
                "token_stream needs model_transaction_policy { decoupled: true }"
            )
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.max_tokens = int(params.get("MAX_TOKENS", "8"))
        self.first_ns = _number_ms(params.get("FIRST_TOKEN_MS", "20"), "FIRST_TOKEN_MS")
        self.token_ns = _number_ms(params.get("TOKEN_MS", "5"), "TOKEN_MS")
        self.empty_final = _flag(params.get("EMPTY_FINAL", "false"), "EMPTY_FINAL")
        max_active = int(params.get("MAX_ACTIVE", "4"))
        self.swap_every = int(params.get("SWAP_EVERY", "0"))
        self._active = []  # stems of the generations streaming now (SWAP_EVERY reads them)
        if self.max_tokens < 0 or max_active < 1:
            raise pb_utils.TritonModelException("MAX_TOKENS must be >= 0 and MAX_ACTIVE >= 1")
        self._queue = collections.deque()
        self._ready = threading.Condition()
        self._stopping = False
        self._workers = [
            threading.Thread(target=self._work, name=f"token_stream-{i}", daemon=True)
            for i in range(max_active)
        ]
        for worker in self._workers:
            worker.start()

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            try:
                generation = self._read(request, sender)
            except ValueError as exc:
                sender.send(_error(str(exc), pb_utils.TritonError.INVALID_ARG), flags=FINAL)
                continue
            with self._ready:
                self._queue.append(generation)
                self._ready.notify()
        return None  # decoupled: the workers answer

    def finalize(self):
        with self._ready:
            self._stopping = True
            pending = list(self._queue)
            self._queue.clear()
            self._ready.notify_all()
        for generation in pending:
            self._send_unloading(generation)
        for worker in self._workers:
            worker.join(timeout=5)

    # -- internals ---------------------------------------------------------------------------------
    def _read(self, request, sender):
        prompt = pb_utils.get_input_tensor_by_name(request, "PROMPT").as_numpy().reshape(-1)[0]
        if isinstance(prompt, str):
            prompt = prompt.encode()
        max_tokens = self.max_tokens
        tensor = pb_utils.get_input_tensor_by_name(request, "MAX_TOKENS")
        if tensor is not None:
            max_tokens = int(tensor.as_numpy().reshape(-1)[0])
            if max_tokens < 0:
                raise ValueError(f"MAX_TOKENS must be >= 0, not {max_tokens}")
        params = _request_parameters(request)
        first_ns, token_ns, empty_final = self.first_ns, self.token_ns, self.empty_final
        if "first_token_ms" in params:
            first_ns = _number_ms(params["first_token_ms"], "first_token_ms")
        if "token_ms" in params:
            token_ns = _number_ms(params["token_ms"], "token_ms")
        if "empty_final" in params:
            empty_final = _flag(params["empty_final"], "empty_final")
        stem = f"{zlib.crc32(prompt):08x}"  # deterministic across processes, unlike the salted hash()
        return _Generation(sender, stem, max_tokens, first_ns, token_ns, empty_final)

    def _work(self):
        while True:
            with self._ready:
                while not self._queue and not self._stopping:
                    self._ready.wait()
                if self._stopping:
                    return
                generation = self._queue.popleft()
                self._active.append(generation.stem)
            try:
                self._generate(generation)
            except Exception as exc:  # a worker must outlive one broken stream
                pb_utils.Logger.log_error(f"token_stream: stream failed: {exc!r}")
            finally:
                with self._ready:
                    self._active.remove(generation.stem)

    def _generate(self, g):
        start = time.perf_counter_ns()
        for index in range(g.max_tokens):
            if self._stopping:
                self._send_unloading(g)
                return
            if g.sender.is_cancelled():  # before the sleep: its round trip is absorbed
                g.sender.send(flags=FINAL)
                return
            _sleep_until(start + g.first_ns + index * g.token_ns)
            final = index == g.max_tokens - 1 and not g.empty_final
            stem = g.stem
            if self.swap_every and index % self.swap_every == self.swap_every - 1:
                with self._ready:
                    stem = next((s for s in self._active if s != g.stem), g.stem)
            response = pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor("TOKEN", np.array([f"{stem}-{index}".encode()], dtype=np.object_)),
                    pb_utils.Tensor("INDEX", np.array([index], dtype=np.int32)),
                ]
            )
            g.sender.send(response, flags=FINAL if final else 0)
        if g.max_tokens == 0:
            _sleep_until(start + g.first_ns)
        if g.max_tokens == 0 or g.empty_final:
            g.sender.send(flags=FINAL)

    @staticmethod
    def _send_unloading(generation):
        with contextlib.suppress(Exception):  # the request may be gone already
            generation.sender.send(
                _error("token_stream is unloading", pb_utils.TritonError.UNAVAILABLE), flags=FINAL
            )
