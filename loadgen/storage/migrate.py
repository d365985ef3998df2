"""Opening a database, and alembic wiring: the schema of a loadgen database is whatever its revisions built.

The configuration is built in code, pointing at the ``loadgen.migrations``
package wherever it is installed, so no ``alembic.ini`` is needed at run time.
alembic itself is imported only to upgrade an older schema: a new database gets the
models' tables at once, stamped with the head revision (alembic's documented recipe for
building a database from scratch; ``test_models_match_migrations`` keeps both the same),
and the revisions are read from the revision files' two assignments, so opening a
database costs a command no alembic import.

Opening is where a database's faults show first, so the engine is made here with
bounded waits, and :func:`storage_errors` turns the faults of the database itself
(locked, full, read-only, unreachable, not a database, no driver) into one
:class:`~loadgen.errors.StorageError` line; a bug (a bad statement) stays a traceback.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import re
import tempfile
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Connection,
    Dialect,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    event,
    inspect,
    make_url,
)
from sqlalchemy.exc import ArgumentError, DatabaseError, DBAPIError, NoSuchModuleError, OperationalError

from loadgen.errors import SchemaError, StorageError
from loadgen.storage.models import Base, make_engine

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

VERSION_TABLE = "alembic_version"
_VERSION = Table(
    VERSION_TABLE,
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)
"""alembic's own version table, as ``alembic stamp`` creates it."""
_REVISION_RE = re.compile(r"^(down_revision|revision)\b[^=]*=\s*(?:\"(\w+)\"|'(\w+)'|None)\s*(?:#.*)?$", re.M)

SQLITE_BUSY_TIMEOUT_S = 30.0
"""How long a SQLite write waits for another writer's lock before it gives up (long enough for
another sweep's commits, short enough to notice a stuck writer); ``?timeout=SECONDS`` in the URL
sets another bound."""
CONNECT_TIMEOUT_S = 10
"""How long a PostgreSQL connection attempt may take (``?connect_timeout=SECONDS`` in the URL)."""
POSTGRES_HINT = "postgresql+psycopg://USER@HOST/DB (pip install 'loadgen[postgres]')"
DRIVER_HINTS = {
    "psycopg": "pip install 'loadgen[postgres]'",
    "psycopg2": "write postgresql+psycopg:// and pip install 'loadgen[postgres]' (or psycopg2-binary)",
    "MySQLdb": "pip install mysqlclient, or write mysql+pymysql:// and pip install pymysql",
    "pymysql": "pip install pymysql",
}
"""What to install when a URL's driver module is missing, by the module's name."""


def shown_url(url: str) -> str:
    """``url`` as messages show it: never its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def open_engine(url: str) -> Engine:
    """:func:`make_engine` with bounded waits; an unknown scheme or a missing driver is a StorageError."""
    shown = shown_url(url)
    try:
        engine = make_engine(url)
    except NoSuchModuleError:
        scheme = make_url(url).drivername
        if scheme.partition("+")[0] == "postgres":
            problem = f"SQLAlchemy dropped the postgres:// alias: write {POSTGRES_HINT}"
        else:
            problem = f"unknown URL scheme {scheme!r}: give a file path, sqlite:///FILE or {POSTGRES_HINT}"
        raise StorageError(f"runs database {shown}: {problem}") from None
    except ImportError as exc:
        name = exc.name or str(exc)
        hint = DRIVER_HINTS.get(name, f"install the Python package that provides {name}")
        raise StorageError(f"runs database {shown}: its driver {name} is not installed: {hint}") from None
    event.listen(engine, "do_connect", _bounded_waits)
    return engine


def _bounded_waits(dialect: Dialect, _record: Any, _args: Any, params: dict[str, Any]) -> None:
    # the URL's own bounds (?timeout=, ?connect_timeout=) arrive in params and win
    if dialect.name == "sqlite":
        params.setdefault("timeout", SQLITE_BUSY_TIMEOUT_S)
    elif dialect.name == "postgresql" and dialect.driver in ("psycopg", "psycopg2"):
        params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)


def _fault(exc: DBAPIError, url: str) -> tuple[str, str] | None:
    """(what is wrong, what to do) when ``exc`` is the database's fault rather than a bug; else None."""
    orig = exc.orig
    said = " ".join(str(orig if orig is not None else exc).split())
    name: str = getattr(orig, "sqlite_errorname", None) or ""
    state: str = getattr(orig, "sqlstate", None) or ""
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        waited = make_url(url).query.get("timeout", SQLITE_BUSY_TIMEOUT_S)
        return (
            f"locked by another writer, gave up after {float(str(waited)):g} s ({said})",
            "run again once it is done, or wait longer with ?timeout=SECONDS in the --db URL",
        )
    if name == "SQLITE_FULL" or state == "53100":
        return f"disk full ({said})", "free space, or pass --db on another disk"
    if name.startswith("SQLITE_READONLY") or state == "25006":
        return f"read-only ({said})", "make it writable, or pass another --db"
    if name == "SQLITE_NOTADB":
        return f"not a SQLite database ({said})", "pass another --db; the file was left as it was"
    if name.startswith("SQLITE_CORRUPT"):
        return f"corrupt ({said})", "restore it from a copy, or pass another --db"
    if name.startswith("SQLITE_CANTOPEN"):
        return f"cannot open the file ({said})", "does its folder exist, and may loadgen write there?"
    if name == "SQLITE_ERROR" or not (isinstance(exc, OperationalError) or type(exc) is DatabaseError):
        return None  # a bad statement or a missing table: a bug, whose traceback helps
    if name:
        return said, "check the file and its disk"
    return said, "check the --db URL (host, port, user, password) and that the database server is up"


@contextlib.contextmanager
def storage_errors(url: str, lost: str = "") -> Iterator[None]:
    """Faults of the database at ``url`` as one StorageError line; ``lost`` says what they cost."""
    try:
        yield
    except DBAPIError as exc:
        fault = _fault(exc, url)
        if fault is None:
            raise
        problem, hint = fault
        raise StorageError(f"runs database {shown_url(url)}: {problem}{lost}; {hint}") from exc


def _script_location() -> Path:
    root = resources.files("loadgen.migrations")
    if not isinstance(root, Path):  # zipped installs: alembic needs real files
        raise RuntimeError(f"loadgen.migrations is not a directory on disk: {root}")
    return root


def alembic_config(url: str) -> Config:
    """Alembic's configuration for ``url``, for ``alembic.command`` calls."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_script_location()))
    cfg.set_main_option("path_separator", "os")
    # the option goes through configparser interpolation: escape the %-encoding of passwords
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@functools.cache
def revisions() -> dict[str, str | None]:
    """Each revision and the one it revises, read from the revision files."""
    found: dict[str, str | None] = {}
    for path in (_script_location() / "versions").glob("*.py"):
        names = {m[1]: m[2] or m[3] or None for m in _REVISION_RE.finditer(path.read_text())}
        revision = names.get("revision")
        if revision is None and path.name != "__init__.py":  # never build a schema from a partial history
            raise RuntimeError(f'{path}: no `revision = "..."` line loadgen can read')
        if revision is not None:
            found[revision] = names.get("down_revision")
    return found


def head_revision() -> str:
    """The revision this loadgen's code reads and writes: the one no other revision revises."""
    known = revisions()
    heads = set(known) - set(known.values())
    if len(heads) != 1:
        raise RuntimeError(f"loadgen.migrations has {len(heads)} head revisions: {sorted(heads)}")
    return heads.pop()


def _current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    rows = conn.execute(_VERSION.select()).scalars().all()
    if len(rows) > 1:
        raise SchemaError(f"{VERSION_TABLE} holds {len(rows)} revisions {rows}; loadgen's have one head")
    return rows[0] if rows else None


def _create(conn: Connection) -> None:
    """A new database: alembic's version table first (SQLite commits each table as it is created,
    so another loadgen looking meanwhile must see a database being built, which it waits for, not
    tables without a version), then the models' tables, then the head revision."""
    _VERSION.create(conn)
    Base.metadata.create_all(conn)
    conn.execute(_VERSION.insert().values(version_num=head_revision()))
    conn.commit()


def _upgrade(conn: Connection) -> None:
    if not inspect(conn).get_table_names():
        _create(conn)
        return
    from alembic import command

    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        # Batch mode rebuilds a table by dropping it, and a drop with foreign keys on
        # cascades into the child tables: turn them off (a no-op inside a transaction).
        conn.commit()
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.commit()
    try:
        cfg = alembic_config(conn.engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()
    finally:
        if sqlite:
            conn.rollback()
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()


MIGRATION_LOCK_KEY = 0x6C6F616467656E
"""PostgreSQL advisory lock that serializes loadgen's schema changes ("loadgen" in hex)."""


@contextlib.contextmanager
def _migration_lock(conn: Connection) -> Iterator[None]:
    """Holds off every other loadgen changing the same database's schema: two sweeps started at
    once on a new database would otherwise both create its tables, and one would fail. SQLite:
    ``flock`` on a lock file of its own in the temporary folder, named by the database's path;
    PostgreSQL: an advisory lock; an in-memory SQLite database has no other user."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
        try:
            yield
        finally:
            conn.rollback()
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")
            conn.commit()
        return
    database = conn.engine.url.database if conn.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or not Path(database).is_file():
        yield
        return
    # never a second descriptor on the database file itself: closing it would drop the POSIX locks
    # SQLite holds through its own (fcntl locks belong to the process, not the descriptor)
    key = hashlib.sha256(str(Path(database).resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"loadgen-schema-{key}.lock", "a") as handle:
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StorageError(
                        f"runs database {shown_url(str(conn.engine.url))}: another loadgen has been "
                        f"changing its schema for {SQLITE_BUSY_TIMEOUT_S:g} s; run again once it is done"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_schema(conn: Connection, *, auto_upgrade: bool) -> None:
    """Check the schema behind ``conn``; with ``auto_upgrade``, bring an empty or older one to head
    (looking again under :func:`_migration_lock`: another loadgen may have done it meanwhile).

    Never drops or recreates anything: a database that is not loadgen's, or that a
    newer loadgen wrote, is refused with :class:`SchemaError`.
    """
    if _schema_change(conn, auto_upgrade=auto_upgrade) is None:
        return
    # end the read that looked before waiting: held across the wait, it would keep the loadgen
    # that holds the lock from committing its schema (a deadlock until SQLite's busy timeout)
    conn.rollback()
    with _migration_lock(conn):
        change = _schema_change(conn, auto_upgrade=auto_upgrade)
        if change is not None:
            log.log(*change)
            _upgrade(conn)


def _schema_change(conn: Connection, *, auto_upgrade: bool) -> tuple[int, str] | None:
    """None when the schema is at head; else what upgrading it means (a log level and message).
    SchemaError for a database loadgen must not touch, or may not without ``auto_upgrade``."""
    url = conn.engine.url.render_as_string(hide_password=True)
    head = head_revision()
    hint = f"run `loadgen db upgrade --db {url}`"
    tables = set(inspect(conn).get_table_names())
    if not tables:
        if not auto_upgrade:
            raise SchemaError(f"database {url} has no loadgen schema, loadgen needs {head}: {hint}")
        return logging.INFO, f"creating the loadgen schema (revision {head}) in {url}"
    if VERSION_TABLE not in tables:
        raise SchemaError(
            f"database {url} is not a loadgen database: it has tables but no {VERSION_TABLE} table"
        )
    current = _current_revision(conn)
    if current == head:
        return None
    if current is not None and current not in revisions():
        raise SchemaError(
            f"database {url} is at schema revision {current}, unknown to this loadgen "
            f"(which needs {head}): it was written by a newer loadgen, upgrade loadgen"
        )
    if not auto_upgrade:
        raise SchemaError(
            f"database {url} is at schema revision {current or 'base'}, loadgen needs {head}: {hint}"
        )
    return logging.WARNING, f"upgrading database {url} from schema revision {current or 'base'} to {head}"


def upgrade(url: str) -> None:
    """Bring the database at ``url`` to head (creating the schema if it is empty)."""
    engine = open_engine(url)
    try:
        with storage_errors(url), engine.connect() as conn:
            ensure_schema(conn, auto_upgrade=True)
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    """The database's schema revision; None if it has none (empty, or not loadgen's)."""
    engine = open_engine(url)
    try:
        with storage_errors(url), engine.connect() as conn:
            return _current_revision(conn)
    finally:
        engine.dispose()


def check_schema(url: str) -> None:
    """Raise :class:`SchemaError` unless the database at ``url`` is at head; migrates nothing."""
    engine = open_engine(url)
    try:
        with storage_errors(url), engine.connect() as conn:
            ensure_schema(conn, auto_upgrade=False)
    finally:
        engine.dispose()
