"""TLS to the server: one frozen settings object, turned into an ``ssl.SSLContext`` or gRPC credentials.

Only file *paths* live in :class:`TlsSettings` (and so in a run's stored settings);
certificates and keys are read when a connection is set up and never kept.
perf_analyzer's ``--ssl-grpc-*`` and ``--ssl-https-*`` options map onto loadgen's five
``ssl*`` options (README, "TLS"), which :mod:`loadgen.config.build` turns into these
settings. Triton's metrics port has no TLS option, so the metrics scraper stays on plain HTTP.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import grpc

from loadgen.errors import SettingProblem, SettingsError

__all__ = ["TlsSettings", "tls_for_url", "url_scheme"]


GRPC_INSECURE = (
    "{ssl_insecure} is for HTTPS only: gRPC cannot skip verifying the server's certificate; "
    "trust its CA with {ssl_ca} FILE instead"
)

INSECURE_WARNING = "{ssl_insecure}: the server's certificate and host name are not checked"
"""Printed once on stderr by each command that connects with ``insecure`` on: verification is
on by default, and turning it off is said where a log keeps it."""


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    return b""


def _problem(key: str, message: str) -> SettingsError:
    return SettingsError([SettingProblem(key, message)])


@dataclass(frozen=True)
class TlsSettings:
    """TLS to the server. Files are PEM; a key must not be encrypted.

    With no ``ca_file`` the system's root certificates (gRPC: its bundled roots) are trusted.
    Construction reads every file and builds a context once, so a missing file, a bad
    certificate or a key that does not match fails before any load is sent.
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
            raise _problem(
                "ssl_key" if self.key_file is None else "ssl_cert",
                "{ssl_cert} and {ssl_key} go together (the client certificate and its key)",
            )
        problems: list[SettingProblem] = []
        for key, path in (("ssl_ca", self.ca_file), ("ssl_cert", self.cert_file), ("ssl_key", self.key_file)):
            if path is not None:
                try:
                    _read(key, path)
                except SettingsError as exc:
                    problems += exc.problems
        if problems:
            raise SettingsError(problems)
        self.ssl_context()

    def ssl_context(self) -> ssl.SSLContext:
        """A client context for HTTPS (asyncio, aiohttp)."""
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        except ssl.SSLError as exc:
            raise _problem(
                "ssl_ca", f"{{ssl_ca}} {self.ca_file}: not a PEM certificate file ({exc.reason})"
            ) from None
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file is not None:
            try:
                context.load_cert_chain(self.cert_file, self.key_file, password=_no_password)
            except ssl.SSLError as exc:
                raise _problem(
                    "ssl_cert",
                    f"{{ssl_cert}} {self.cert_file} / {{ssl_key}} {self.key_file}: cannot use them "
                    f"({exc.reason}; PEM files, an unencrypted key that matches the certificate)",
                ) from None
        return context

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials for ``grpc.aio.secure_channel``."""
        if self.insecure:
            raise _problem("ssl_insecure", GRPC_INSECURE)
        return grpc.ssl_channel_credentials(
            root_certificates=_read("ssl_ca", self.ca_file) if self.ca_file else None,
            private_key=_read("ssl_key", self.key_file) if self.key_file else None,
            certificate_chain=_read("ssl_cert", self.cert_file) if self.cert_file else None,
        )


def _read(key: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise _problem(key, f"{{{key}}} {path}: cannot read it ({exc.strerror or exc})") from None


def url_scheme(url: str) -> str:
    """``https`` of ``https://h:1``; empty for ``host:port`` (no scheme) and for what is no URL (the
    settings' address rule says why)."""
    try:
        return urlsplit(url).scheme.lower() if "//" in url else ""
    except ValueError:  # an unclosed [IPv6 literal
        return ""


def tls_for_url(url: str, tls: TlsSettings | None) -> TlsSettings | None:
    """``tls``, or default TLS settings when ``url`` is ``https://`` (HTTP)."""
    if tls is None and url_scheme(url) == "https":
        return TlsSettings()
    return tls
