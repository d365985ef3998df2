import asyncio
import socket
from typing import Any

from loadgen.transports.addresses import split_host_port
from loadgen.transports.base import InferRequestSpec, InputTensor
from loadgen.transports.http import HttpTransport, build_request

SPEC = InferRequestSpec("identity", (InputTensor("INPUT0", "FP32", (1, 4), bytes(16)),), ("OUTPUT0",))


def test_http_request_is_a_complete_binary_tensor_request() -> None:
    raw = build_request(SPEC, "127.0.0.1", 8000, {"Authorization": "Bearer x"})
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v2/models/identity/infer HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Authorization"] == "Bearer x"
    assert int(headers["Content-Length"]) == len(body)
    json_len = int(headers["Inference-Header-Content-Length"])
    assert body[json_len:] == bytes(16)
    assert b'"binary_data_size":16' in body[:json_len]


def test_http_transport_talks_keep_alive_and_sends_headers() -> None:
    """Against a loopback socket server that records what arrives (the wire, not Triton)."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):  # two requests on one connection
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(
                next(
                    v
                    for k, v in (h.split(b": ", 1) for h in head.split(b"\r\n")[1:] if h)
                    if k.lower() == b"content-length"
                )
            )
            await reader.readexactly(length)
            seen.append(head)
            body = b'{"error":"nope"}' if len(seen) == 2 else b"{}"
            status = b"400 Bad Request" if len(seen) == 2 else b"200 OK"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            await writer.drain()
        writer.close()

    async def main() -> list[str | None]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport = HttpTransport(f"127.0.0.1:{port}", headers={"X-Token": "secret"})
        request = transport.prepare(SPEC)
        send = transport.sender(0)
        results = [await send(request), await send(request)]
        await transport.close()
        server.close()
        await server.wait_closed()
        return results

    assert asyncio.run(main()) == [None, "INVALID_ARGUMENT: nope"]  # Triton's 400, as gRPC says it
    assert len(seen) == 2 and all(b"X-Token: secret" in head for head in seen)


def test_split_host_port() -> None:
    assert split_host_port("localhost:9000") == ("localhost", 9000)
    assert split_host_port("http://10.1.2.3") == ("10.1.2.3", 8000)


def test_every_transport_spells_a_refused_connection_the_same() -> None:
    from loadgen.transports.grpc import GrpcTransport
    from loadgen.transports.grpc_h2 import GrpcH2Transport
    from loadgen.transports.reasons import is_connection_failure

    with socket.socket() as held:  # a loopback port nobody listens on
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]

    async def reason(transport: Any) -> str | None:
        try:
            return await asyncio.wait_for(transport.sender(0)(transport.prepare(SPEC)), 10)
        finally:
            await transport.close()

    address = f"127.0.0.1:{port}"
    reasons = {asyncio.run(reason(make(address))) for make in (HttpTransport, GrpcH2Transport, GrpcTransport)}
    assert reasons == {f"CONNECTION: cannot connect to {address}: Connection refused"}
    assert all(r is not None and is_connection_failure(r) for r in reasons)


def test_a_ports_first_bytes_say_which_protocol_it_speaks() -> None:
    from loadgen.transports.sniff import Speaks, classify

    assert classify(b"HTTP/1.0 404 Not") is Speaks.HTTP1
    assert classify(b"\x00\x00\x18\x04\x00\x00\x00\x00\x00\x00\x04\x00@\x00") is Speaks.HTTP2  # SETTINGS
    assert classify(b"\x00\x00\x08\x07\x00\x00\x00\x00\x00") is Speaks.HTTP2  # GOAWAY
    assert classify(b"\x15\x03\x03\x00\x02\x02\x46") is Speaks.TLS
    assert classify(b"") is None and classify(b"SSH-2.0-OpenSSH") is None


def test_an_http_request_given_up_never_takes_the_next_ones_answer() -> None:
    """``start`` writes at once on a connected slot; a request whose future is cancelled drops
    its connection, so its late answer cannot be read as the next request's."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        for answer in (b"200 OK", b"400 Bad Request"):  # the second answer comes late
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(h.split(b": ")[1]) for h in head.split(b"\r\n") if h.startswith(b"Content-Length")
            )
            await reader.readexactly(length)
            if answer.startswith(b"400"):
                await asyncio.sleep(0.3)
            body = b'{"error":"late"}' if answer.startswith(b"400") else b"{}"
            writer.write(
                b"HTTP/1.1 " + answer + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            await writer.drain()
        await reader.read()
        writer.close()

    async def main() -> tuple[bool, str | None, str | None]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport = HttpTransport(f"127.0.0.1:{port}")
        request = transport.prepare(SPEC)
        send, start = transport.sender(0), transport.starter(0)
        unconnected = start(request) is None
        first = await send(request)
        given_up = start(request)
        assert given_up is not None
        given_up.cancel()
        after = await send(request)  # on a new connection: the late 400 goes nowhere
        await asyncio.sleep(0.4)
        await transport.close()
        server.close()
        await server.wait_closed()
        return unconnected, first, after

    assert asyncio.run(main()) == (True, None, None)
    assert len(connections) == 2
