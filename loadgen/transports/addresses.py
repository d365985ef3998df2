"""Server addresses: the one parser of the ``host:port`` and URL forms that every client accepts.

Each API has its own default ports, given as a scheme -> port map that also says which schemes a
caller accepts: HTTP clients read ``https://host`` as port 443, the gRPC client as 8001.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

HTTP_PORTS: Mapping[str, int] = {"": 8000, "http": 8000, "https": 443}
"""Triton's HTTP API: 8000, or 443 for an ``https://`` URL without a port."""
GRPC_PORTS: Mapping[str, int] = dict.fromkeys(("", "http", "https", "grpc", "grpcs"), 8001)
"""Triton's gRPC API: 8001 whatever the scheme."""


def split_host_port(url: str, default_ports: Mapping[str, int] = HTTP_PORTS) -> tuple[str, int]:
    """``host:port`` or ``scheme://host[:port]``: the host (``localhost`` if none) and the port, else
    the scheme's default from ``default_ports``; a scheme not in ``default_ports`` is a ValueError."""
    parts = urlsplit(url if "//" in url else f"//{url}")
    default_port = default_ports.get(parts.scheme)
    if default_port is None:
        forms = ["host:port", *(f"{scheme}://" for scheme in default_ports if scheme)]
        raise ValueError(f"unsupported URL scheme in {url!r}: use {', '.join(forms[:-1])} or {forms[-1]}")
    return parts.hostname or "localhost", parts.port or default_port


def grpc_target(url: str) -> str:
    """``host:port`` as gRPC's channel takes it (``[::1]:8001`` for IPv6): the channel reads a scheme
    as a name resolver, so ``http://host:8001`` would be looked up as a host name."""
    host, port = split_host_port(url, GRPC_PORTS)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
