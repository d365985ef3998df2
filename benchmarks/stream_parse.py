"""What reading a stream message costs the lean gRPC client, per response (issue 16).

    .venv/bin/python benchmarks/stream_parse.py

The h2 stream reader parses every ModelStreamInferResponse with protobuf to find the final flag,
an error and the token count. This times that read on a message shaped like token_stream's (a
BYTES token and an INT32 index, the final flag false), beside slicing the same bytes (the floor
any reader pays), so the cost can be weighed against a response's share of a core.
"""

from __future__ import annotations

import timeit

from tritonclient.grpc import service_pb2

from loadgen.transports.grpc_codec import FINAL_FLAG, read_stream_response

ROUNDS = 200_000


def token_message() -> bytes:
    message = service_pb2.ModelStreamInferResponse()
    response = message.infer_response
    response.model_name, response.model_version = "token_stream", "1"
    for name, datatype in (("TOKEN", "BYTES"), ("INDEX", "INT32")):
        response.outputs.add(name=name, datatype=datatype, shape=[1])
    response.raw_output_contents.extend([b"\x0b\x00\x00\x00" + b"9f8e7d6c-3", b"\x03\x00\x00\x00"])
    response.parameters[FINAL_FLAG].bool_param = False
    data: bytes = message.SerializeToString()
    return data


def main() -> None:
    data = token_message()
    floor = min(timeit.repeat(lambda: data[5:], number=ROUNDS, repeat=5)) / ROUNDS
    plain = min(timeit.repeat(lambda: read_stream_response(data), number=ROUNDS, repeat=5)) / ROUNDS
    named = min(timeit.repeat(lambda: read_stream_response(data, "TOKEN"), number=ROUNDS, repeat=5)) / ROUNDS
    print(f"message: {len(data)} bytes; best of 5 x {ROUNDS} reads")
    print(f"slice (floor):                {floor * 1e6:6.2f} us")
    print(f"read_stream_response:         {plain * 1e6:6.2f} us  ({plain / floor:.0f}x the floor)")
    print(f"read_stream_response + TOKEN: {named * 1e6:6.2f} us")
    print(f"at 10,000 responses/s: {plain * 1e4 * 100:.1f}% of one core")


if __name__ == "__main__":
    main()
