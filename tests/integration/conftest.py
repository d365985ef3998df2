"""Real embedded Triton servers for integration tests, on ports picked at run time.

Ports are never the defaults: a developer's own server may already hold 8000-8002.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadgen.server import EmbeddedServer, ServerPorts, server_installed
from loadgen.server.install import default_model_repository
from tests.integration.postgres import postgres  # noqa: F401  (session fixture: a private PostgreSQL)

SERVER_FIXTURES = ("triton", "small_triton", "traced_triton")
NOT_INSTALLED = "embedded Triton not installed: pip install 'loadgen[server]' (nvidia-pytriton)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Any test using a server fixture is a server test, wherever it lives: lets `-m "not server"` work.
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in SERVER_FIXTURES):
            item.add_marker(pytest.mark.server)


EXIT_TIMEOUT = "--exit-timeout-secs=3"
"""Triton waits 30 s for requests still in flight when it stops; a test's clients are gone by then."""


def require_server() -> None:
    """Skip a server test where Triton is not installed; CI (LOADGEN_REQUIRE_SERVER) fails instead."""
    if not server_installed():
        if os.environ.get("LOADGEN_REQUIRE_SERVER"):
            pytest.fail(NOT_INSTALLED)
        pytest.skip(NOT_INSTALLED)


def start_server(
    tmp: Path, name: str, models: tuple[str, ...] = (), extra_args: tuple[str, ...] = ()
) -> EmbeddedServer:
    """A started server on free ports, logging to ``tmp``; ``models``: only those of the demo
    repository (a repository of one small model starts in about 2 s)."""
    require_server()
    repo = None
    if models:
        repo = tmp / f"{name}-repo"
        repo.mkdir()
        for model in models:
            (repo / model).symlink_to(default_model_repository() / model)
    server = EmbeddedServer(
        repo,
        ServerPorts.free(),
        log_file=tmp / f"{name}.log",
        extra_args=(EXIT_TIMEOUT, *extra_args),
        startup_timeout_s=90,
    )
    server.start()
    return server


def discard(server: EmbeddedServer) -> None:
    """End a test's private server at once: a graceful stop costs about 3 s (Triton polls its models
    once a second while it unloads them), and ``kill`` still removes the stubs and their regions.
    The graceful stop is tested where it is the subject (test_embedded.py), and the session's server
    stops gracefully."""
    server.kill()
    server.stop()


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One server (demo repository) shared by the whole session: starts cost seconds."""
    server = start_server(tmp_path_factory.mktemp("triton"), "tritonserver")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def small_triton(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A private server of the identity model only, for tests that stop or kill it: it starts
    in about 2 s where the whole demo repository takes 8."""
    server = start_server(tmp_path, "small-tritonserver", ("identity",))
    try:
        yield server
    finally:
        discard(server)
