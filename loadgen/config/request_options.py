"""The options that shape how each request is sent: as a stream (and cancelled midway), with
which request parameters, and as part of a sequence (stateful models). Part of
:data:`loadgen.config.options.OPTIONS`."""

from __future__ import annotations

from loadgen.config import values
from loadgen.config.option import LOAD, SERVER, Option

REQUEST_OPTIONS: tuple[Option, ...] = (
    Option(
        "streaming",
        ("--streaming",),
        "send each request as a stream and time every response (decoupled models: time to first "
        "response, gaps between responses, responses per request; default: unary): Triton's gRPC "
        "stream, or over HTTP its generate_stream (server-sent events)",
        values.boolean,
        switch=True,
        group=SERVER,
    ),
    Option(
        "token_output",
        ("--token-output",),
        "--streaming: count a response's tokens as the elements of this output (tokens/s for a model "
        "that sends several tokens per response; default: one token per response)",
        metavar="NAME",
        group=LOAD,
    ),
    Option(
        "cancel_after_ms",
        ("--cancel-after-ms",),
        "--streaming: cancel requests this long after their send (a duration; plain number: ms), to "
        "see how the server frees what they held; cancelled requests are counted apart (default: none)",
        values.duration_ms,
        metavar="TIME",
        group=LOAD,
    ),
    Option(
        "cancel_after_responses",
        ("--cancel-after-responses",),
        "--streaming: cancel requests at their N-th response (default: none; with --cancel-after-ms, "
        "whichever comes first)",
        values.whole,
        metavar="N",
        group=LOAD,
    ),
    Option(
        "cancel_share_pct",
        ("--cancel-share",),
        "the share of requests cancelled, spread evenly (default 100%%)",
        values.percent,
        metavar="PCT",
        group=LOAD,
    ),
    Option(
        "request_parameters",
        ("--request-parameter",),
        "send this request parameter with every request (repeatable, perf_analyzer's form; TYPE bool, "
        "int or string): Triton's priority (1 is the highest level) and timeout (microseconds, as the "
        "model's queue policy allows), or one the model reads; default none",
        values.request_parameters,
        metavar="NAME:VALUE:TYPE",
        repeat=True,
        group=SERVER,
    ),
    Option(
        "sequence_length",
        ("--sequence-length",),
        "a sequence model: requests per sequence (default 20, or each input data stream's length)",
        values.whole,
        metavar="N",
        group=LOAD,
    ),
    Option(
        "sequence_length_variation",
        ("--sequence-length-variation",),
        "draw each sequence's length uniformly within PCT%% of --sequence-length (default 20%%)",
        values.percent,
        metavar="PCT",
        group=LOAD,
    ),
    Option(
        "num_of_sequences",
        ("--num-of-sequences",),
        "a sequence model in open loop: sequences active at once, the sends spread over them (default 4)",
        values.whole,
        metavar="N",
        group=LOAD,
    ),
    Option(
        "sequence_id_range",
        ("--sequence-id-range",),
        "correlation ids START up to END (excluded) for this run's sequences, so that several loadgens "
        "on one server never share one (default: from 1)",
        values.id_range,
        metavar="START[:END]",
        group=LOAD,
    ),
    Option(
        "serial_sequences",
        ("--serial-sequences",),
        "in open loop, send a sequence's next request only once the previous one is answered "
        "(default: on schedule, several in flight)",
        values.boolean,
        switch=True,
        group=LOAD,
    ),
    Option(
        "shared_memory",
        ("--shared-memory",),
        "where the inputs travel: none (in each request, default) or system (placed once in POSIX "
        "shared memory that Triton maps: the server must run on this machine); cuda is not supported",
        metavar="none|system|cuda",
        group=SERVER,
    ),
    Option(
        "output_shared_memory_size",
        ("--output-shared-memory-size",),
        "with --shared-memory system: the server writes each output to a slice of BYTES of a "
        "shared-memory region, one slice per in-flight slot (default: outputs come in the response)",
        values.whole,
        metavar="BYTES",
        group=SERVER,
    ),
)
