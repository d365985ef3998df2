"""Error reasons spelled one way by every transport, so that one failure is one reason.

A reason is ``CODE: message``. CODE is the status as gRPC names it; an HTTP answer's status is
mapped back to the code Triton sent, as Triton's HTTP server maps codes to statuses (INTERNAL 500,
NOT_FOUND 404, UNAVAILABLE 503, UNSUPPORTED 501; INVALID_ARG, ALREADY_EXISTS, CANCELLED and
UNKNOWN all 400, so over HTTP those read INVALID_ARGUMENT). Triton's ``[request id: ...]`` prefix
is removed, so that reasons do not multiply with request ids; a reason is one line (a Python
model's traceback arrives over several) of at most :data:`MAX_REASON` characters.

A failure of the connection itself (refused, reset, closed, GOAWAY) reads ``CONNECTION: ...`` on
every transport, an answer that breaks the protocol (and so the connection) ``PROTOCOL: ...``.
Only these tell a slot that the server may be gone or is not what it should be
(:func:`is_connection_failure`):
an UNAVAILABLE the server sends (a full queue, a model's own error) is an answer, offered again
at once like any other.
"""

from __future__ import annotations

import os
import re
import ssl

MAX_REASON = 300
CONNECTION = "CONNECTION"
PROTOCOL = "PROTOCOL"
_CONNECTION_PREFIXES = (CONNECTION + ": ", PROTOCOL + ": ")
_REQUEST_ID = re.compile(r"\[request id: [^\]]*\]\s*")

HTTP_STATUS_CODES = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}
"""Triton's HTTP statuses and the gRPC code of the same error (other statuses read ``HTTP <n>``)."""


def status_reason(code: str, message: str) -> str:
    """``CODE: message`` without per-request ids, on one line, cut to :data:`MAX_REASON`."""
    return f"{code}: {' '.join(_REQUEST_ID.sub('', message).split())}"[:MAX_REASON]


def http_reason(status: int, message: str) -> str:
    """An HTTP error answer as the reason gRPC gives for the same error (Triton's statuses), or
    ``HTTP <status>: message`` for one Triton does not send (a proxy's 502, say)."""
    return status_reason(HTTP_STATUS_CODES.get(status) or f"HTTP {status}", message)


def connection_reason(detail: str) -> str:
    """The connection failed (not the request): ``CONNECTION: detail``."""
    return f"{CONNECTION}: {detail}"[:MAX_REASON]


def cannot_connect(peer: str, exc: OSError) -> str:
    """asyncio's own text repeats the address (``Connect call failed ('127.0.0.1', 1)``): the
    system's words for the error number read as grpc.aio's (``Connection refused``)."""
    if isinstance(exc, ssl.SSLError) or not exc.errno:  # a failed handshake says why in its text
        cause = str(exc.strerror or exc) if not isinstance(exc, ssl.SSLError) else str(exc)
    else:
        cause = os.strerror(exc.errno)
    return connection_reason(f"cannot connect to {peer}: {cause}")


def connection_lost(peer: str, cause: object = None) -> str:
    """``cause``: the exception or message that says why, if any."""
    return connection_reason(f"connection to {peer} lost" + (f": {cause}" if cause else ""))


def is_connection_failure(reason: str) -> bool:
    """True for a ``CONNECTION`` or ``PROTOCOL`` reason: the connection failed or broke, the server
    may be gone. Never true for a status the server sent."""
    return reason.startswith(_CONNECTION_PREFIXES)
