"""The embedded Triton server (optional extra: pip install 'loadgen[server]').

Deliberately stdlib-only (no tritonclient): it must work, and fail helpfully,
before any client code is involved.
"""

from loadgen.errors import EmbeddedServerError, ServerNotInstalled
from loadgen.server.embedded import EmbeddedServer, grpc_tls_args
from loadgen.server.foreground import serve_forever
from loadgen.server.install import default_model_repository, server_installed
from loadgen.server.ports import ServerPorts

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
