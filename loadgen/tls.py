"""TLS to the server: one frozen settings object, turned into an ``ssl.SSLContext`` or gRPC credentials.

Only file *paths* live in :class:`TlsSettings` (and so in a run's stored settings);
certificates and keys are read when a connection is set up and never kept.
perf_analyzer's ``--ssl-grpc-*`` and ``--ssl-https-*`` options map onto the five
options here (README, "TLS"). Triton's metrics port has no TLS option, so the
metrics scraper stays on plain HTTP.
"""

from __future__ import annotations

import argparse
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc

from loadgen.errors import ConfigError

__all__ = ["TlsSettings", "add_tls_options", "tls_for_url", "tls_from_args"]

GRPC_INSECURE = (
    "--ssl-insecure is for HTTPS only: gRPC cannot skip verifying the server's certificate; "
    "trust its CA with --ssl-ca FILE instead"
)


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    return b""


@dataclass(frozen=True)
class TlsSettings:
    """TLS to the server. Files are PEM; a key must not be encrypted.

    With no ``ca_file`` the system's root certificates (gRPC: its bundled roots) are trusted.
    """

    ca_file: str | None = None
    """``--ssl-ca``: root certificates to trust instead of the system's."""
    cert_file: str | None = None
    """``--ssl-cert``: client certificate chain (mutual TLS), with ``key_file``."""
    key_file: str | None = None
    """``--ssl-key``: the client certificate's private key."""
    insecure: bool = False
    """``--ssl-insecure``: HTTPS only; do not verify the server's certificate or host name."""

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("--ssl-cert and --ssl-key go together (the client certificate and its key)")
        for option, path in (
            ("--ssl-ca", self.ca_file),
            ("--ssl-cert", self.cert_file),
            ("--ssl-key", self.key_file),
        ):
            if path is not None:
                _read(option, path)
        self.ssl_context()  # a bad certificate or a key that does not match fails here, before any load

    def ssl_context(self) -> ssl.SSLContext:
        """A client context for HTTPS (asyncio, aiohttp)."""
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        except ssl.SSLError as exc:
            raise ConfigError(f"--ssl-ca {self.ca_file}: not a PEM certificate file ({exc.reason})") from None
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file is not None:
            try:
                context.load_cert_chain(self.cert_file, self.key_file, password=_no_password)
            except ssl.SSLError as exc:
                raise ConfigError(
                    f"--ssl-cert {self.cert_file} / --ssl-key {self.key_file}: cannot use them "
                    f"({exc.reason}; PEM files, an unencrypted key that matches the certificate)"
                ) from None
        return context

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials for ``grpc.aio.secure_channel``."""
        if self.insecure:
            raise ConfigError(GRPC_INSECURE)
        return grpc.ssl_channel_credentials(
            root_certificates=_read("--ssl-ca", self.ca_file) if self.ca_file else None,
            private_key=_read("--ssl-key", self.key_file) if self.key_file else None,
            certificate_chain=_read("--ssl-cert", self.cert_file) if self.cert_file else None,
        )


def _read(option: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot read it ({exc.strerror or exc})") from None


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.lower() if "//" in url else ""


def tls_for_url(url: str, tls: TlsSettings | None) -> TlsSettings | None:
    """``tls``, or default TLS settings when ``url`` is ``https://`` (HTTP)."""
    if tls is None and _scheme(url) == "https":
        return TlsSettings()
    return tls


def add_tls_options(parser: argparse.ArgumentParser) -> None:
    """``--ssl``, ``--ssl-ca``, ``--ssl-cert``, ``--ssl-key``, ``--ssl-insecure``."""
    group = parser.add_argument_group("TLS (any of these, or -u https://..., turns TLS on)")
    group.add_argument("--ssl", action="store_true", help="talk to the server over TLS")
    group.add_argument("--ssl-ca", metavar="FILE", default=None, help="PEM root certificates to trust")
    group.add_argument("--ssl-cert", metavar="FILE", default=None, help="PEM client certificate (mutual TLS)")
    group.add_argument("--ssl-key", metavar="FILE", default=None, help="PEM key of --ssl-cert (unencrypted)")
    group.add_argument(
        "--ssl-insecure",
        action="store_true",
        help="HTTPS only: do not verify the server's certificate or host name",
    )


def tls_from_args(args: argparse.Namespace) -> TlsSettings | None:
    """The TLS settings the command line asks for; None for plain connections.

    Raises :class:`ConfigError` (one line, exit 2) for missing or unreadable files and
    for combinations that cannot work, before anything connects.
    """
    url: str = args.url or ""
    scheme = _scheme(url)
    files: dict[str, Any] = {"ca_file": args.ssl_ca, "cert_file": args.ssl_cert, "key_file": args.ssl_key}
    if args.protocol == "grpc" and scheme == "https":
        raise ConfigError(f"-u {url} is an HTTPS address: for gRPC over TLS give host:port and --ssl")
    if not (args.ssl or args.ssl_insecure or scheme == "https" or any(files.values())):
        return None
    if scheme == "http":
        raise ConfigError(f"-u {url} is plain HTTP but TLS was asked for: use https://")
    if getattr(args, "embedded", False):
        raise ConfigError("the embedded server speaks plain HTTP and gRPC: --ssl options need -u")
    if args.protocol == "grpc" and args.ssl_insecure:
        raise ConfigError(GRPC_INSECURE)
    return TlsSettings(
        **{key: None if value is None else str(Path(value).expanduser()) for key, value in files.items()},
        insecure=args.ssl_insecure,
    )
