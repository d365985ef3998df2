"""The embedded Triton server (optional extra: pip install 'loadgen[server]')."""

from loadgen.errors import EmbeddedServerError, ServerNotInstalled
from loadgen.server.embedded import (
    EmbeddedServer,
    ServerPorts,
    default_model_repository,
    grpc_tls_args,
    serve_forever,
    server_installed,
)

__all__ = [
    "EmbeddedServer",
    "EmbeddedServerError",
    "ServerNotInstalled",
    "ServerPorts",
    "default_model_repository",
    "grpc_tls_args",
    "serve_forever",
    "server_installed",
]
