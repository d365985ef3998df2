"""A private PostgreSQL server for the tests: initdb in a temporary folder, a free port, stopped at the end.

Debian's ``postgresql`` package (binaries in /usr/lib/postgresql/<version>/bin). Without it the
tests that use the ``postgres`` fixture skip, or fail when LOADGEN_REQUIRE_POSTGRES is set (CI).
PostgreSQL refuses to run as root: as root, the cluster belongs to the ``postgres`` user (runuser).
Connections over TCP need the password (scram-sha-256), as a real server's would.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import URL

POSTGRES_MISSING = "PostgreSQL not installed (Debian: apt-get install postgresql)"
USER = "loadgen"
PASSWORD = "s3cr%t@pg:/x"
"""Characters that URLs escape, and a ``%`` that alembic's configparser must not read."""
SYSTEM_USER = "postgres"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def postgres_bindir() -> Path | None:
    """The newest installed server's binaries (Debian's layout first, then ``initdb`` on PATH)."""

    def version(initdb: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", initdb.parent.parent.name))

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PostgresServer:
    """A running cluster on 127.0.0.1:``port``; ``USER`` is its superuser."""

    bindir: Path
    root: Path
    port: int
    as_postgres: list[str]
    """The command prefix that runs server binaries as the cluster's owner (empty unless root)."""

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str, *, password: bool = True) -> str:
        """A SQLAlchemy URL (driver psycopg 3) for ``database`` on this server."""
        return URL.create(
            "postgresql+psycopg",
            username=USER,
            password=PASSWORD if password else None,
            host="127.0.0.1",
            port=self.port,
            database=database,
        ).render_as_string(hide_password=False)

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        subprocess.run(
            [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name],
            env={**os.environ, "PGPASSWORD": PASSWORD},
            check=True,
            capture_output=True,
            timeout=60,
        )
        return self.url(name)

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*self.as_postgres, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise AssertionError(f"{' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}{log}")

    @classmethod
    def start(cls, bindir: Path) -> PostgresServer:
        # not pytest's tmp_path: it lives in a folder only root may enter
        root = Path(tempfile.mkdtemp(prefix="loadgen-pg-"))
        as_postgres = []
        if os.geteuid() == 0:
            shutil.chown(root, SYSTEM_USER, SYSTEM_USER)
            as_postgres = ["runuser", "-u", SYSTEM_USER, "--"]
        server = cls(bindir=bindir, root=root, port=_free_port(), as_postgres=as_postgres)
        pwfile = root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if as_postgres:
            shutil.chown(pwfile, SYSTEM_USER, SYSTEM_USER)
        pwfile.chmod(0o600)
        try:
            server._run(
                str(bindir / "initdb"), "-D", str(server.data), "-U", USER, f"--pwfile={pwfile}",
                "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C",
                "--no-sync",
            )  # fmt: skip
            options = f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
            server._run(
                str(bindir / "pg_ctl"), "-D", str(server.data), "-l", str(server.log), "-o", options,
                "-w", "-t", "60", "start",
            )  # fmt: skip
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return server

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One private PostgreSQL cluster for the whole session; each test module creates its databases."""
    bindir = postgres_bindir()
    if bindir is None:
        if os.environ.get("LOADGEN_REQUIRE_POSTGRES"):  # CI: a missing PostgreSQL is a failure, not a skip
            pytest.fail(POSTGRES_MISSING)
        pytest.skip(POSTGRES_MISSING)
    server = PostgresServer.start(bindir)
    try:
        yield server
    finally:
        server.stop()
