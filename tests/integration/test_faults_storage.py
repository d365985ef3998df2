"""Faults of the runs database, injected for real: every one ends in one line and exit 2, never a
traceback, and no finished step that fitted is lost.

A locked SQLite file (another connection holds ``BEGIN EXCLUSIVE``), a full disk (a small tmpfs),
a read-only file (a read-only bind mount as root, else mode 0444), a file that is not a database,
a URL whose scheme or driver is missing, an unreachable or wrongly authenticated PostgreSQL, and
a database from a newer loadgen. Mounts are root's: without them those tests skip.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import URL

from loadgen.results import RunStatus
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore
from tests.cli import free_port, loadgen, loadgen_here, one_line_error, start_loadgen
from tests.integration.postgres import PASSWORD, USER, PostgresServer

pytestmark = pytest.mark.faults

SHORT = ["-p", "300", "--warmup", "100", "-r", "2", "--no-metrics", "-q"]


def _sweep(server: EmbeddedServer, db: str, levels: str) -> list[str]:
    return ["sweep", "-m", "identity", "-u", server.grpc_url, "--concurrency", levels, *SHORT, "--db", db]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _upgraded(path: Path) -> str:
    url = f"sqlite:///{path}"
    assert loadgen("db", "upgrade", "--db", url).returncode == 0
    return url


def _wait_for_run(path: Path, proc: subprocess.Popen[str], timeout_s: float = 60) -> None:
    """Until the sweep has recorded its run (a plain read: WAL readers never block the writer)."""
    deadline = time.monotonic() + timeout_s
    with closing(sqlite3.connect(path)) as conn:
        while conn.execute("select count(*) from runs").fetchone()[0] == 0:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the sweep recorded no run in time"
            time.sleep(0.02)


@contextmanager
def _started(*args: str) -> Iterator[subprocess.Popen[str]]:
    """``loadgen ARGS`` in the background, killed if the block leaves it running."""
    proc = start_loadgen(*args)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _ended(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Another writer holding the database's write lock until the block ends."""
    with closing(sqlite3.connect(path, isolation_level=None, timeout=30)) as conn:
        conn.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")


def _mount(*args: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounts need root")
    done = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")


def _unmount(target: Path) -> None:
    if subprocess.run(["umount", str(target)], capture_output=True, timeout=30, check=False).returncode:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30, check=True)


@contextmanager
def _tmpfs(target: Path, size: str) -> Iterator[Path]:
    target.mkdir()
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target))
    try:
        yield target
    finally:
        _unmount(target)


@contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """``path`` read-only, also to root (whom mode bits do not stop): a read-only bind mount."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(0o644)
        return
    _mount("--bind", str(path), str(path))
    try:
        _mount("-o", "remount,ro,bind", str(path))
        yield
    finally:
        _unmount(path)


# -- a locked database -------------------------------------------------------------------------------
def test_a_lock_released_within_the_bound_loses_no_step(triton: EmbeddedServer, tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with _started(*_sweep(triton, _upgraded(path), "1,2,3")) as proc:
        _wait_for_run(path, proc)
        with _exclusive(path):  # the first step ends while it is held: its commit waits
            time.sleep(3)
        released = datetime.now(UTC)
        result = _ended(proc)
    assert result.returncode == 0, result.stderr
    with RunStore(f"sqlite:///{path}", auto_upgrade=False) as store:
        (run,) = store.list_runs()
        steps = store.steps(run.id)
    assert run.status == RunStatus.COMPLETED.value
    assert [s.concurrency for s in steps] == [1, 2, 3]
    assert steps[0].started_at < released <= steps[-1].started_at  # measured through the lock, all kept


def test_a_lock_held_past_the_bound_is_one_line(triton: EmbeddedServer, tmp_path: Path) -> None:
    """``?timeout=1``: the bound on the wait, here 1 s instead of 30."""
    path = tmp_path / "runs.db"
    _upgraded(path)
    with _started(*_sweep(triton, f"sqlite:///{path}?timeout=1", "1,2,3")) as proc:
        _wait_for_run(path, proc)
        with _exclusive(path):  # held until the sweep gave up
            result = _ended(proc)
    line = one_line_error(result)
    assert result.returncode == 2
    assert "locked by another writer, gave up after 1 s" in line and "?timeout=SECONDS" in line
    kept = re.search(r"run \d+ keeps (\d+) finished step\(s\)", line)
    assert kept is not None, line
    with RunStore(f"sqlite:///{path}", auto_upgrade=False) as store:
        (run,) = store.list_runs()
    assert run.step_count == int(kept[1]) < 3


# -- a full disk -------------------------------------------------------------------------------------
def test_a_full_disk_keeps_the_steps_that_fit(triton: EmbeddedServer, tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "disk", "1m") as disk:
        url = _upgraded(disk / "runs.db")
        # room for the WAL index (32 KiB), the run (2 pages) and one step (5 pages), not two steps
        room = (8 + 3 + 5 + 3) * 4096
        stat = os.statvfs(disk)
        (disk / "filler").write_bytes(bytes(stat.f_bavail * stat.f_frsize - room))
        result = loadgen(*_sweep(triton, url, "1,2,3,4,5,6"))
        line = one_line_error(result)
        (disk / "filler").unlink()  # room to read back what was kept
        with RunStore(url, auto_upgrade=False) as store:
            (run,) = store.list_runs()
    assert result.returncode == 2
    assert "disk full" in line and "free space" in line
    assert f"run {run.id} keeps {run.step_count} finished step(s)" in line
    assert 1 <= run.step_count < 6


# -- files that cannot be written, or are not databases ------------------------------------------------
def test_a_read_only_database_is_read_but_not_written(triton: EmbeddedServer, tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    url = _upgraded(path)
    before = _digest(path)
    with _read_only(path):
        listing = loadgen_here("runs", "--db", url)
        result = loadgen(*_sweep(triton, url, "1"))
    assert listing.returncode == 0, listing.stderr
    assert result.returncode == 2
    assert "read-only" in one_line_error(result)
    assert _digest(path) == before


@pytest.mark.parametrize(
    "content", [b"a text file, not a database\n", os.urandom(8192)], ids=["text", "random"]
)
def test_a_file_that_is_not_a_database_is_left_alone(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(content)
    unreachable = f"127.0.0.1:{free_port()}"  # the database is opened before the server is asked
    for args in (["db", "upgrade"], ["sweep", "-m", "identity", "-u", unreachable, *SHORT]):
        result = loadgen(*args, "--db", str(path))
        assert result.returncode == 2
        assert "not a SQLite database" in one_line_error(result)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.db"]


def test_a_database_from_a_newer_loadgen_says_to_upgrade_loadgen(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    _upgraded(path)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("update alembic_version set version_num = 'f00dfeedbeef'")
    before = _digest(path)
    for args in (["runs"], ["db", "upgrade"]):
        result = loadgen(*args, "--db", f"sqlite:///{path}")
        assert result.returncode == 2
        assert "f00dfeedbeef" in (line := one_line_error(result)) and "upgrade loadgen" in line
    assert _digest(path) == before


# -- URLs: schemes, drivers, servers -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("foo://x", "unknown URL scheme 'foo'"),
        ("postgres://u@db.example/runs", "dropped the postgres:// alias: write postgresql+psycopg://"),
        ("mysql://u@db.example/runs", "its driver MySQLdb is not installed: pip install mysqlclient"),
        ("postgresql://u@db.example/runs", "is not installed: pip install 'loadgen[postgres]'"),
    ],
    ids=["unknown-scheme", "postgres-alias", "mysql-no-driver", "postgresql-no-driver"],
)
def test_a_url_without_its_dialect_or_driver_names_what_to_install(
    url: str, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL's driver is installed with the tests: hidden here, as on a machine without the extra
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nsys.modules['psycopg'] = None\nsys.modules['psycopg2'] = None\n"
    )
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    )
    result = loadgen("runs", "--db", url)  # a process of its own: the driver is hidden at its start
    assert result.returncode == 2
    assert said in one_line_error(result)


def test_an_unreachable_postgresql_is_one_line() -> None:
    url = f"postgresql+psycopg://{USER}:secret@127.0.0.1:{free_port()}/runs"
    for args in (["runs"], ["db", "upgrade"]):
        result = loadgen(*args, "--db", url)
        assert result.returncode == 2
        line = one_line_error(result)
        assert "Connection refused" in line and "secret" not in line


@pytest.mark.parametrize(
    ("user", "password"), [(USER, "wrong"), ("nobody", PASSWORD)], ids=["password", "user"]
)
def test_a_refused_postgresql_login_is_one_line(user: str, password: str, postgres: PostgresServer) -> None:
    url = URL.create(
        "postgresql+psycopg",
        username=user,
        password=password,
        host="127.0.0.1",
        port=postgres.port,
        database="postgres",
    ).render_as_string(hide_password=False)
    result = loadgen_here("runs", "--db", url)
    assert result.returncode == 2
    line = one_line_error(result)
    assert f'password authentication failed for user "{user}"' in line and password not in line
