"""``loadgen serve``: the embedded Triton server (CPU, Python backend) in the foreground."""

from __future__ import annotations

import argparse
from typing import Any

from loadgen.commands import arguments
from loadgen.errors import ConfigError


def add_server_ports(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-repository",
        type=arguments.existing_folder,
        default=None,
        help="model repository (default: ./model_repository)",
    )
    parser.add_argument("--http-port", type=arguments.port, default=8000)
    parser.add_argument("--grpc-port", type=arguments.port, default=8001)
    parser.add_argument("--metrics-port", type=arguments.port, default=8002)


def register(sub: Any) -> None:
    """Add ``serve`` to the CLI's sub-parsers."""
    serve = sub.add_parser("serve", help="run the embedded Triton server (CPU, Python backend)")
    add_server_ports(serve)
    serve.add_argument(
        "--host",
        type=arguments.host,
        default="127.0.0.1",
        metavar="ADDR",
        help="the address Triton listens on (default 127.0.0.1, this machine only; 0.0.0.0: every interface)",
    )
    serve.add_argument(
        "--log-file",
        type=arguments.output_file,
        default=None,
        help="write the server log here instead of stdout",
    )
    serve.add_argument("--log-verbose", type=arguments.level, default=0, help="Triton's --log-verbose level")
    serve.add_argument(
        "--model-control",
        choices=("none", "explicit"),
        default="none",
        help="explicit: every model loaded at the start, and models may then be loaded, unloaded and "
        "reconfigured through the repository API (what `loadgen tune` and `model add --validate -u` "
        "need) (default none: the models at the start, fixed)",
    )
    serve.add_argument(
        "--grpc-tls-cert",
        type=arguments.existing_file,
        metavar="FILE",
        help="serve gRPC over TLS with this PEM certificate",
    )
    serve.add_argument(
        "--grpc-tls-key", type=arguments.existing_file, metavar="FILE", help="... and this PEM private key"
    )
    serve.add_argument(
        "--grpc-tls-client-ca",
        type=arguments.existing_file,
        metavar="FILE",
        help="mutual TLS: accept only clients whose certificate this CA signed",
    )
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; the exit code is the server's."""
    from loadgen.server import EmbeddedServer, ServerPorts, grpc_tls_args, serve_forever

    ports = ServerPorts(http=args.http_port, grpc=args.grpc_port, metrics=args.metrics_port)
    extra: list[str] = []
    if args.grpc_tls_cert or args.grpc_tls_key or args.grpc_tls_client_ca:
        if not (args.grpc_tls_cert and args.grpc_tls_key):
            raise ConfigError("gRPC over TLS needs both --grpc-tls-cert and --grpc-tls-key")
        extra = grpc_tls_args(args.grpc_tls_cert, args.grpc_tls_key, args.grpc_tls_client_ca)
    if args.model_control == "explicit":
        extra += ["--model-control-mode=explicit", "--load-model=*"]
    server = EmbeddedServer(
        args.model_repository,
        ports,
        log_file=args.log_file,
        log_verbose=args.log_verbose,
        extra_args=extra,
        host=args.host,
    )
    return serve_forever(server, stream_log=args.log_file is None)
