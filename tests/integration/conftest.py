"""Real embedded Triton servers for integration tests, on ports picked at run time.

Ports are never the defaults: a developer's own server may already hold 8000-8002.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadgen.server import EmbeddedServer, ServerPorts, server_installed
from tests.integration.postgres import postgres  # noqa: F401  (session fixture: a private PostgreSQL)

SERVER_FIXTURES = ("triton", "fresh_triton")
NOT_INSTALLED = "embedded Triton not installed: pip install 'loadgen[server]' (nvidia-pytriton)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Any test using a server fixture is a server test, wherever it lives: lets `-m "not server"` work.
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in SERVER_FIXTURES):
            item.add_marker(pytest.mark.server)


def _start(tmp: Path, name: str) -> EmbeddedServer:
    if not server_installed():
        if os.environ.get("LOADGEN_REQUIRE_SERVER"):  # CI: a missing server is a failure, not a skip
            pytest.fail(NOT_INSTALLED)
        pytest.skip(NOT_INSTALLED)
    server = EmbeddedServer(ports=ServerPorts.free(), log_file=tmp / f"{name}.log", startup_timeout_s=90)
    server.start()
    return server


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One server (demo repository) shared by the whole session: starts cost seconds."""
    server = _start(tmp_path_factory.mktemp("triton"), "tritonserver")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_triton(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A private server for tests that stop or kill it."""
    server = _start(tmp_path, "fresh-tritonserver")
    try:
        yield server
    finally:
        server.stop()
