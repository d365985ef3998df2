"""The server's three ports: picking free ones, refusing taken ones, writing host:port.

Checked before the start so that a taken port is named with the flag that changes it,
instead of surfacing as a bind error deep in Triton's log.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from loadgen.errors import EmbeddedServerError


@dataclass(frozen=True)
class ServerPorts:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    @classmethod
    def free(cls) -> ServerPorts:
        """Ports the OS says are free now, so parallel servers (tests) do not collide."""
        socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(3)]
        try:
            for s in socks:
                s.bind(("0.0.0.0", 0))
            http, grpc, metrics = (int(s.getsockname()[1]) for s in socks)
        finally:
            for s in socks:
                s.close()
        return cls(http=http, grpc=grpc, metrics=metrics)

    def labelled(self) -> list[tuple[int, str, str]]:
        """(port, protocol label, CLI flag) triples, for checks and messages."""
        return [
            (self.http, "HTTP", "--http-port"),
            (self.grpc, "gRPC", "--grpc-port"),
            (self.metrics, "metrics", "--metrics-port"),
        ]


def check_ports(ports: ServerPorts) -> None:
    """Raises EmbeddedServerError for a port out of range, used twice or already in use."""
    seen: dict[int, str] = {}
    for port, label, flag in ports.labelled():
        if not 0 < port < 65536:
            raise EmbeddedServerError(f"{label} port {port} is out of range: pick another with {flag}")
        if port in seen:
            raise EmbeddedServerError(
                f"{label} and {seen[port]} ports are both {port}: pick another with {flag}"
            )
        seen[port] = label
        if _port_in_use(port):
            raise EmbeddedServerError(
                f"port {port} ({label}) is already in use: stop the other server or pick another with {flag}"
            )


def _port_in_use(port: int) -> bool:
    """Bind-test like the server will (SO_REUSEADDR, so TIME_WAIT leftovers do not count)."""
    for host in ("0.0.0.0", "127.0.0.1"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                return True
    return False


def hostport(host: str, port: int) -> str:
    """host:port, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
