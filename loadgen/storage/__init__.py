"""Storage of runs: a SQLAlchemy database whose schema alembic owns."""

from loadgen.errors import RunNotFound, SchemaError, StorageError
from loadgen.storage.migrate import (
    SQLITE_BUSY_TIMEOUT_S,
    check_schema,
    current_revision,
    head_revision,
    upgrade,
)
from loadgen.storage.models import DEFAULT_DB_URL, db_url
from loadgen.storage.records import MetricSampleRecord, RunRecord, StepRecord
from loadgen.storage.store import RunStore

__all__ = [
    "DEFAULT_DB_URL",
    "MetricSampleRecord",
    "RunNotFound",
    "RunRecord",
    "RunStore",
    "SQLITE_BUSY_TIMEOUT_S",
    "SchemaError",
    "StepRecord",
    "StorageError",
    "check_schema",
    "current_revision",
    "db_url",
    "head_revision",
    "upgrade",
]
