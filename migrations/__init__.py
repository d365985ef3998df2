"""Alembic revisions of the loadgen database, installed as ``loadgen.migrations``."""
