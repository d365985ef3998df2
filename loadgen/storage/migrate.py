"""Alembic wiring: the schema of a loadgen database is whatever its revisions built.

The configuration is built in code, pointing at the ``loadgen.migrations``
package wherever it is installed, so no ``alembic.ini`` is needed at run time.
"""

from __future__ import annotations

import functools
import logging
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from loadgen.errors import SchemaError
from loadgen.storage.models import make_engine

log = logging.getLogger(__name__)

VERSION_TABLE = "alembic_version"


def _script_location() -> Path:
    root = resources.files("loadgen.migrations")
    if not isinstance(root, Path):  # zipped installs: alembic needs real files
        raise RuntimeError(f"loadgen.migrations is not a directory on disk: {root}")
    return root


def alembic_config(url: str) -> Config:
    """Alembic's configuration for ``url``, for ``alembic.command`` calls."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_script_location()))
    cfg.set_main_option("path_separator", "os")
    # the option goes through configparser interpolation: escape the %-encoding of passwords
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def head_revision() -> str:
    """The revision this loadgen's code reads and writes."""
    head = _script().get_current_head()
    if head is None:
        raise RuntimeError("loadgen.migrations holds no revision")
    return head


def _upgrade(conn: Connection) -> None:
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


def ensure_schema(conn: Connection, *, auto_upgrade: bool) -> None:
    """Check the schema behind ``conn``; with ``auto_upgrade``, bring an empty or older one to head.

    Never drops or recreates anything: a database that is not loadgen's, or that a
    newer loadgen wrote, is refused with :class:`SchemaError`.
    """
    url = conn.engine.url.render_as_string(hide_password=True)
    head = head_revision()
    hint = f"run `loadgen db upgrade --db {url}`"
    tables = set(inspect(conn).get_table_names())
    if not tables:
        if not auto_upgrade:
            raise SchemaError(f"database {url} has no loadgen schema, loadgen needs {head}: {hint}")
        log.info("creating the loadgen schema (revision %s) in %s", head, url)
        _upgrade(conn)
        return
    if VERSION_TABLE not in tables:
        raise SchemaError(
            f"database {url} is not a loadgen database: it has tables but no {VERSION_TABLE} table"
        )
    current = MigrationContext.configure(conn).get_current_revision()
    if current == head:
        return
    known = {script.revision for script in _script().walk_revisions()}
    if current is not None and current not in known:
        raise SchemaError(
            f"database {url} is at schema revision {current}, unknown to this loadgen "
            f"(which needs {head}): it was written by a newer loadgen, upgrade loadgen"
        )
    if not auto_upgrade:
        raise SchemaError(
            f"database {url} is at schema revision {current or 'base'}, loadgen needs {head}: {hint}"
        )
    log.warning("upgrading database %s from schema revision %s to %s", url, current or "base", head)
    _upgrade(conn)


def upgrade(url: str) -> None:
    """Bring the database at ``url`` to head (creating the schema if it is empty)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ensure_schema(conn, auto_upgrade=True)
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    """The database's schema revision; None if it has none (empty, or not loadgen's)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def check_schema(url: str) -> None:
    """Raise :class:`SchemaError` unless the database at ``url`` is at head; migrates nothing."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ensure_schema(conn, auto_upgrade=False)
    finally:
        engine.dispose()
