"""Reaching a Ray cluster (``--ray ADDRESS``): Ray is an optional extra, and a cluster that is
not there is said in one line, quickly, instead of Ray's own minutes of retries."""

from __future__ import annotations

import logging
import socket
from types import ModuleType

from loadgen.errors import ConfigError

INSTALL_HINT = "pip install 'loadgen[ray]'"
NAMESPACE = "loadgen"
"""Ray namespace of loadgen's actors: another driver (a test, ``ray list actors``) finds them by name."""
PROBE_TIMEOUT_S = 3.0


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--ray needs Ray, which is not installed here: {INSTALL_HINT}") from None
    return ray


def check_reachable(address: str) -> None:
    """Ray is installed, and a ``host:port`` answers: refused here in one line, before Ray
    retries it for minutes (``auto`` and ``ray://`` are read by ``ray.init`` itself)."""
    import_ray()
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(
            f"--ray {address}: no Ray cluster answers there ({exc.strerror or exc}); "
            "start one with `ray start --head`, or give its address (host:6379, ray://host:10001, auto)"
        ) from None


def connect(address: str) -> bool:
    """Connects this process to the cluster at ``address``; True if it did (and so disconnects
    later), False if it was already connected (a caller that connected itself keeps it)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    check_reachable(address)
    try:
        ray.init(
            address=address,
            namespace=NAMESPACE,
            log_to_driver=False,
            logging_level=logging.WARNING,
            configure_logging=False,
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        said = " ".join(str(exc).split())
        raise ConfigError(f"--ray {address}: cannot connect to a Ray cluster: {said}") from None
    return True


def disconnect(owned: bool) -> None:
    if owned:
        import_ray().shutdown()
