"""Triton's own per-request traces, joined to the client's timings of the same requests.

``--trace-rate N`` turns Triton's TIMESTAMPS tracing on for the measured model (Triton samples one
request in N), and every request loadgen sends carries an id of its own (``request_id`` in the
trace), so each trace joins the client's send and answer times. Triton 2.51 cannot change its trace
file over the network: the server must have been started with ``--trace-config triton,file=PATH``
(``loadgen serve`` and ``--embedded`` do), and loadgen must be able to read that file (the same
host, or ``--trace-file`` where this machine sees it). The file gets one numbered part per flush
(``log_frequency``): loadgen flushes at each step's end by posting the settings again, which makes
Triton write the traces it holds to a new, complete part; the parts a step made are read and joined.
The previous settings are put back however the sweep ends.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import sys
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from loadgen.errors import ConfigError
from loadgen.transports.base import ID_WIDTH

TRACE_KEYS = ("trace_level", "trace_rate", "trace_count", "log_frequency")
LOG_FREQUENCY = 10_000
"""Traces per file part: Triton writes a part every this many traces, and at each flush."""
FLUSH_WAIT_S = 1.0
"""How long a flushed part may take to appear (Triton writes it when the last trace of the old
settings ends, at once when the load has stopped)."""

ARRIVAL = ("HTTP_RECV_START", "GRPC_WAITREAD_END")
DEPARTURE = ("HTTP_SEND_START", "GRPC_SEND_START")
"""The response handed to the protocol: its SEND_END is stamped when the write completes on the
server's completion thread, which can come after the client already read the response."""


class TraceAPI(Protocol):
    url: str

    async def trace_settings(self, model: str | None) -> dict[str, tuple[str, ...]]: ...

    async def update_trace_settings(self, model: str, settings: Mapping[str, Any]) -> None: ...


def run_tag() -> str:
    """8 hex digits naming one run's requests in a trace file other clients may share."""
    return secrets.token_hex(4)


def request_id(tag: str, counter: int) -> bytes:
    """A traced request's id: the run's tag and the send's counter, :data:`ID_WIDTH` bytes."""
    return f"{tag}{counter & 0xFFFFFFFF:08x}".encode()


@dataclass(frozen=True)
class TraceSample:
    """One traced request (or, with ``parent``, a request an ensemble or BLS model made for it), in
    microseconds. ``client_us`` and ``outside_us`` are NaN for a child (the client never saw it)."""

    trace_id: int
    parent_id: int | None
    model: str
    request_id: str
    client_us: float
    server_us: float
    """From the request's arrival (HTTP receive start, gRPC read end) to its response handed to
    the protocol (send start)."""
    queue_us: float
    compute_us: float
    compute_input_us: float
    compute_infer_us: float
    compute_output_us: float
    outside_us: float
    """``client_us - server_us``: the network both ways, the client, and Triton's protocol handling
    outside the two stamps."""


class SendLog:
    """The client's side of traced requests: per send counter, when it was sent and answered
    (``perf_counter_ns``, the clock Triton's trace stamps use on Linux: CLOCK_MONOTONIC).

    Arrays, not objects, so that a traced send costs two stores; one log per step, whose counters
    start at ``base`` so that ids never repeat within a run."""

    __slots__ = ("base", "closed", "cuts", "done", "sent", "span", "tag")

    def __init__(self, tag: str, base: int) -> None:
        self.tag, self.base = tag, base
        self.sent = array("q")
        self.done = array("q")
        self.cuts: list[int] = []
        """When each measured window began and ended (``perf_counter_ns``; the first: the warm-up's end)."""
        self.closed = False
        """The measured windows are over (the untraced one is not one of them)."""
        self.span = (1, 0)
        """The windows the step's numbers come from (:meth:`keep_last`): only their sends join."""

    def cut(self, now_ns: int) -> None:
        """A window boundary of the load, while the measured windows run."""
        if not self.closed:
            self.cuts.append(now_ns)

    def keep_last(self, windows: int) -> None:
        """Join only the sends of the last ``windows`` measured windows, those the step keeps
        (the warm-up's and the others' are left out; without a measured window, all are)."""
        if len(self.cuts) >= 2:
            self.span = (self.cuts[-min(windows, len(self.cuts) - 1) - 1], self.cuts[-1])

    def next_id(self) -> tuple[int, bytes]:
        """The next send's index in this log and its request id."""
        index = len(self.sent)
        self.sent.append(0)
        self.done.append(0)
        return index, request_id(self.tag, self.base + index)

    def answered(self, index: int, sent_ns: int, done_ns: int) -> None:
        self.sent[index], self.done[index] = sent_ns, done_ns

    def times(self, counter: int) -> tuple[int, int] | None:
        """(sent, answered) of the send with this run-wide counter; None if not kept."""
        index = counter - self.base
        if 0 <= index < len(self.sent) and self.done[index]:
            sent, done = self.sent[index], self.done[index]
            if self.span[0] <= sent and done <= self.span[1]:
                return sent, done
        return None

    @property
    def end(self) -> int:
        """The counter the next step's log starts at."""
        return self.base + len(self.sent)


def _span(stamps: Mapping[str, int], start: str, end: str) -> float:
    if start in stamps and end in stamps:
        return (stamps[end] - stamps[start]) / 1000.0
    return math.nan


def _first(stamps: Mapping[str, int], names: Sequence[str]) -> int | None:
    return next((stamps[n] for n in names if n in stamps), None)


def read_traces(records: Iterable[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Triton's trace records (one per stamp or per identity) gathered by trace id."""
    traces: dict[int, dict[str, Any]] = {}
    for record in records:
        trace = traces.setdefault(int(record["id"]), {"stamps": {}})
        for stamp in record.get("timestamps", ()):
            trace["stamps"][stamp["name"]] = int(stamp["ns"])
        for key in ("model_name", "request_id", "parent_id"):
            if key in record:
                trace[key] = record[key]
    return traces


def join(traces: Mapping[int, dict[str, Any]], tag: str, log: SendLog) -> list[TraceSample]:
    """Each trace of this run's requests (``request_id`` = ``tag`` + counter) with the client's send
    and answer times of the same counter in ``log``, and the traces made for them (children, any
    depth). Requests the client did not see answered in the measured windows are left out."""
    samples: list[TraceSample] = []
    joined: dict[int, str] = {}
    for trace_id, trace in sorted(traces.items()):
        rid = str(trace.get("request_id", ""))
        if "parent_id" in trace or not rid.startswith(tag) or len(rid) != ID_WIDTH:
            continue
        timed = log.times(int(rid[len(tag) :], 16))
        stamps = trace["stamps"]
        arrival, departure = _first(stamps, ARRIVAL), _first(stamps, DEPARTURE)
        if timed is None or arrival is None or departure is None:
            continue
        client = (timed[1] - timed[0]) / 1000.0
        server = (departure - arrival) / 1000.0
        joined[trace_id] = rid
        samples.append(_sample(trace_id, None, trace, rid, client, server))
    children = {tid: t for tid, t in traces.items() if "parent_id" in t}
    while True:  # children of joined traces, then their children
        found = {tid: t for tid, t in children.items() if int(t["parent_id"]) in joined and tid not in joined}
        if not found:
            break
        for tid, trace in sorted(found.items()):
            parent = int(trace["parent_id"])
            joined[tid] = joined[parent]
            server = _span(trace["stamps"], "REQUEST_START", "REQUEST_END")
            samples.append(_sample(tid, parent, trace, joined[parent], math.nan, server))
    return _with_children(samples)


def _sample(
    trace_id: int, parent: int | None, trace: dict[str, Any], rid: str, client: float, server: float
) -> TraceSample:
    s = trace["stamps"]
    return TraceSample(
        trace_id=trace_id,
        parent_id=parent,
        model=str(trace.get("model_name", "")),
        request_id=rid,
        client_us=client,
        server_us=server,
        queue_us=_span(s, "QUEUE_START", "COMPUTE_START"),
        compute_us=_span(s, "COMPUTE_START", "COMPUTE_END"),
        compute_input_us=_span(s, "COMPUTE_START", "COMPUTE_INPUT_END"),
        compute_infer_us=_span(s, "COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START"),
        compute_output_us=_span(s, "COMPUTE_OUTPUT_START", "COMPUTE_END"),
        outside_us=client - server,
    )


def _with_children(samples: list[TraceSample]) -> list[TraceSample]:
    """An ensemble's own trace has no queue or compute stamps: its steps' traces add up to them
    (an inner ensemble's first, so that nested ones add up too)."""
    by_parent: dict[int, list[TraceSample]] = {}
    for sample in samples:
        if sample.parent_id is not None:
            by_parent.setdefault(sample.parent_id, []).append(sample)
    done: dict[int, TraceSample] = {}

    def filled(sample: TraceSample) -> TraceSample:
        if sample.trace_id not in done:
            kids = [filled(kid) for kid in by_parent.get(sample.trace_id, [])]
            done[sample.trace_id] = (
                _summed(sample, kids) if kids and math.isnan(sample.compute_us) else sample
            )
        return done[sample.trace_id]

    return [filled(sample) for sample in samples]


def _summed(sample: TraceSample, kids: list[TraceSample]) -> TraceSample:
    def total(name: str) -> float:
        return float(sum(v for k in kids if not math.isnan(v := getattr(k, name))))

    return TraceSample(
        **{
            **sample.__dict__,
            "queue_us": total("queue_us"),
            "compute_us": total("compute_us"),
            "compute_input_us": total("compute_input_us"),
            "compute_infer_us": total("compute_infer_us"),
            "compute_output_us": total("compute_output_us"),
        }
    )


def _first_value(value: tuple[str, ...]) -> str:
    return value[0] if value else ""


class TraceSession:
    """Tracing on for one model for a sweep: :meth:`collect` after each step, previous settings put
    back by :meth:`restore` (call it however the sweep ends)."""

    def __init__(self, api: TraceAPI, model: str, rate: int, trace_file: str | None, count: int = -1) -> None:
        self.api, self.model, self.rate, self.user_file, self.count = api, model, rate, trace_file, count
        self.previous: dict[str, tuple[str, ...]] = {}
        self.inherited = False
        self.file = Path()
        self.tag = run_tag()
        self._seen: set[tuple[str, int]] = set()
        """The parts read (or there before): by name and time written, as a restarted Triton numbers
        its parts from 0 again."""
        self._warned = False

    async def start(self) -> None:
        """Check that traces can be written and read here, then turn tracing on."""
        own = await self.api.trace_settings(self.model)
        server = await self.api.trace_settings(None)
        mode = _first_value(own.get("trace_mode", ("triton",)))
        if mode != "triton":
            raise ConfigError(
                f"--trace-rate needs Triton's own trace mode; the server at {self.api.url} traces "
                f"in {mode!r} mode (its spans go to a collector loadgen cannot read)"
            )
        where = _first_value(own.get("trace_file", ()))
        if not where:
            raise ConfigError(
                f"Triton at {self.api.url} writes no trace file: start it with --trace-config "
                "triton,file=PATH (loadgen serve does); Triton cannot be given one over the network"
            )
        self.file = Path(self.user_file or where)
        if not self.file.parent.is_dir():
            raise ConfigError(
                f"cannot read Triton's trace file {self.file} from this machine: give --trace-file with "
                "the path where this machine sees it (a shared volume)"
            )
        self.previous = {k: own.get(k, ()) for k in TRACE_KEYS}
        self.inherited = all(own.get(k) == server.get(k) for k in TRACE_KEYS)
        self._seen = set(self._parts())
        await self._post()

    def _parts(self) -> list[tuple[str, int]]:
        """The trace file's numbered parts (name, time written), in number order."""
        prefix = self.file.name + "."
        found = []
        for path in self.file.parent.glob(f"{self.file.name}.*"):
            number = path.name[len(prefix) :]
            if number.isdigit():
                try:
                    found.append((int(number), path.name, path.stat().st_mtime_ns))
                except OSError:  # gone meanwhile
                    continue
        return [(name, written) for _, name, written in sorted(found)]

    async def _post(self) -> None:
        await self.api.update_trace_settings(
            self.model,
            {
                "trace_level": ["TIMESTAMPS"],
                "trace_rate": str(self.rate),
                "trace_count": str(self.count),  # counted afresh at each step (each post is new settings)
                "log_frequency": str(LOG_FREQUENCY),
            },
        )

    async def pause(self, log: SendLog) -> None:
        """The step's measured windows are over: tracing off (the traces held are written out) for
        its untraced window; :meth:`collect` turns it on again."""
        log.closed = True
        await self.api.update_trace_settings(self.model, {"trace_level": ["OFF"]})

    async def resume(self) -> None:
        """Tracing on again (after a server that went away came back: its settings are new)."""
        await self._post()

    async def collect(self, log: SendLog) -> list[TraceSample]:
        """Flush what Triton holds, read the new parts, join them to the client's times.

        Triton writes a flushed part when the post returns; a part that does not parse yet (still
        being written) is read again until :data:`FLUSH_WAIT_S`."""
        await self._post()  # new settings: the old ones write their traces out
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FLUSH_WAIT_S
        records: list[dict[str, Any]] = []
        read_any = False
        while True:
            for part in [p for p in self._parts() if p not in self._seen]:
                try:
                    records += json.loads((self.file.parent / part[0]).read_text())
                except (OSError, ValueError):
                    continue  # still being written: read again below
                self._seen.add(part)
                read_any = True
            pending = [p for p in self._parts() if p not in self._seen]
            if (read_any and not pending) or loop.time() > deadline:
                break
            await asyncio.sleep(0.05)
        answered = sum(1 for done in log.done if done)
        if not read_any and answered >= 2 * self.rate and not self._warned:
            self._warned = True
            print(
                f"loadgen: warning: {answered} requests answered while Triton traced one in "
                f"{self.rate}, but no part of its trace file appeared in {self.file.parent}: is the "
                "server on another host? Give --trace-file where this machine sees the file",
                file=sys.stderr,
            )
        return join(read_traces(records), self.tag, log)

    async def restore(self) -> None:
        """The model's settings as they were (inherited from the server's again when they were)."""
        settings: dict[str, Any] = {
            k: (None if self.inherited else list(v) if k == "trace_level" else _first_value(v))
            for k, v in self.previous.items()
        }
        await self.api.update_trace_settings(self.model, settings)
