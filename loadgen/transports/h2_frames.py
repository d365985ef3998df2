"""HTTP/2 frames on the wire: RFC 9113's constants, the encoders of the frames the client sends, and
:class:`PreparedCall`, a gRPC call's two frames built once so that a send only stamps a stream id.

Facts from RFC 9113: frame header = 24-bit length, 8-bit type, 8-bit flags, 1 reserved bit + 31-bit
stream id (§4.1); windows above 2^31-1 are a FLOW_CONTROL_ERROR (§6.5.2); frame sizes are
2^14..2^24-1 (§6.5.2).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types (RFC 9113 §6)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    range(10)
)
# flags
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
# settings identifiers (RFC 9113 §6.5.2)
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
# error codes (RFC 9113 §7)
H2_ERRORS = (
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "INTERNAL_ERROR",
    "FLOW_CONTROL_ERROR",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "FRAME_SIZE_ERROR",
    "REFUSED_STREAM",
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY",
    "HTTP_1_1_REQUIRED",
)
PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, CANCEL, COMPRESSION_ERROR = 0x1, 0x3, 0x6, 0x8, 0x9

MAX_WINDOW = 2**31 - 1
MAX_STREAM_ID = 2**31 - 1
DEFAULT_WINDOW = 65_535
MIN_FRAME_SIZE = 2**14
MAX_FRAME_SIZE = 2**24 - 1

FRAME_HEADER = struct.Struct(">BHBBL")  # length (high byte, low 16 bits), type, flags, stream id
U32 = struct.Struct(">L")
STREAM_MASK = 0x7FFFFFFF


class ConnectionError_(Exception):
    """A connection error found while parsing (RFC 9113 §5.4.1): code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def unpadded(payload: bytes) -> bytes:
    """A PADDED frame's content: after its pad length, before its padding (RFC 9113 §6.1)."""
    if not payload or payload[0] >= len(payload):
        raise ConnectionError_(PROTOCOL_ERROR, f"padding longer than its {len(payload)}-byte frame")
    return payload[1 : len(payload) - payload[0]]


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame: the 9-byte header and the payload."""
    n = len(payload)
    return FRAME_HEADER.pack(n >> 16, n & 0xFFFF, ftype, flags, stream_id) + payload


def settings_frame(settings: Sequence[tuple[int, int]]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HL", key, value) for key, value in settings))


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, U32.pack(increment))


def goaway(last_stream_id: int, error_code: int, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, struct.pack(">LL", last_stream_id, error_code) + debug)


def h2_error_name(code: int) -> str:
    return H2_ERRORS[code] if 0 <= code < len(H2_ERRORS) else f"0x{code:x}"


class PreparedCall:
    """One request, built once: the HPACK block and the DATA payload (gRPC length prefix + message).

    A send only fills in the stream id of the two frame headers.
    """

    __slots__ = ("block", "data_prefix", "headers_prefix", "payload", "size")

    def __init__(self, block: bytes, message: bytes) -> None:
        self.block = block
        self.payload = b"\x00" + U32.pack(len(message)) + message  # not compressed
        self.size = len(self.payload)
        self.data_prefix = frame(DATA, END_STREAM, 0, self.payload)[:5]
        # a block over the smallest frame size any peer accepts goes out with CONTINUATION frames
        self.headers_prefix = (
            frame(HEADERS, END_HEADERS, 0, block)[:5] if len(block) <= MIN_FRAME_SIZE else b""
        )

    def frames(self, stream_id: int) -> bytes:
        """Both frames of the fast path (fits the peer's frame size and windows)."""
        sid = U32.pack(stream_id)
        return b"".join((self.headers_prefix, sid, self.block, self.data_prefix, sid, self.payload))

    def header_frames(self, stream_id: int, max_frame: int) -> bytes:
        block = self.block
        if len(block) <= max_frame:
            return frame(HEADERS, END_HEADERS, stream_id, block)
        chunks = [block[i : i + max_frame] for i in range(0, len(block), max_frame)]
        out = [frame(HEADERS, 0, stream_id, chunks[0])]
        out += [frame(CONTINUATION, 0, stream_id, c) for c in chunks[1:-1]]
        out.append(frame(CONTINUATION, END_HEADERS, stream_id, chunks[-1]))
        return b"".join(out)
