"""Database engine and schema: SQLAlchemy 2 tables, SQLite tuning, migrations.

SQLite (the default) runs in WAL mode with a busy timeout, and write
transactions start with ``BEGIN IMMEDIATE`` so two processes never deadlock on
a read-to-write lock upgrade ("database is locked").  Any other URL
(``PORTAL_DB_URL=postgresql+psycopg://...``) is used as it is.

Schema changes are numbered migrations applied in order at open; a store made
by a newer portal is refused rather than damaged.

Ids of users and models are never reused (``AUTOINCREMENT`` on SQLite, a
sequence on PostgreSQL): a model's owner and a prediction's model are stored
by id, so a user or model deleted and then re-created under the same name is a
different row that inherits nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import CreateTable

from ..errors import PortalError

__all__ = [
    "AliasRow",
    "AuditRow",
    "Base",
    "MeasurementRow",
    "ModelRow",
    "PredictionRow",
    "SCHEMA_VERSION",
    "TokenRow",
    "UserRow",
    "VersionRow",
    "make_engine",
    "migrate",
    "utcnow",
]

SCHEMA_VERSION = 3


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class SchemaInfoRow(Base):
    __tablename__ = "schema_info"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class ModelRow(Base):
    __tablename__ = "models"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True, index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    task: Mapped[str] = mapped_column(String(32), default="other")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # NULL: nobody owns it (its user was gone when the store was upgraded, or it was
    # registered by the local operator); only admins may change it, and see it if private
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    visibility: Mapped[str] = mapped_column(String(16), default="shared")
    next_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class VersionRow(Base):
    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("model_id", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    blob_sha: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    source_format: Mapped[str] = mapped_column(String(32))
    info: Mapped[dict[str, Any]] = mapped_column(JSON)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id"), nullable=True, index=True)
    method: Mapped[str | None] = mapped_column(String(64), nullable=True)
    method_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reference_sha: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128), default="")


class AliasRow(Base):
    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("model_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class AuditRow(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(256), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class UserRow(Base):
    """A person or service account of the shared user store (UI and API)."""

    __tablename__ = "users"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    role: Mapped[str] = mapped_column(String(16))  # viewer | analyst | admin
    password_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class TokenRow(Base):
    """An API token; only its hash is stored."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(128), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class MeasurementRow(Base):
    """Size/speed/agreement figures of a version (against its parent), with the machine they came from."""

    __tablename__ = "measurements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), index=True)
    baseline_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("versions.id", ondelete="SET NULL"), nullable=True, index=True
    )
    dataset_sha: Mapped[str] = mapped_column(String(64), index=True)
    environment: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    results: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128), default="")


class PredictionRow(Base):
    """One prediction request (UI, CLI, API or library), written in batches off the hot path."""

    __tablename__ = "predictions"
    __table_args__ = (Index("ix_predictions_model_version_ts", "model_id", "version", "ts"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    # the log lives and dies with its model: deleting the model deletes its rows and samples
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    caller: Mapped[str] = mapped_column(String(128), default="")
    source: Mapped[str] = mapped_column(String(16), default="library")  # ui | cli | api | library
    rows: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_kind: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cache_hit: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    sample: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)


_V1_TABLES = ("schema_info", "models", "versions", "aliases", "audit", "users", "tokens", "measurements")


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy's begin event issues BEGIN itself
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 30000")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("portal_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and immediate writes."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _sqlite_setup(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _create_v1(conn: Connection) -> None:
    Base.metadata.create_all(conn, tables=[Base.metadata.tables[name] for name in _V1_TABLES])
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION portal_audit_append_only() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'audit is append-only'; END $$ LANGUAGE plpgsql"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
            "FOR EACH ROW EXECUTE FUNCTION portal_audit_append_only()"
        )
    if conn.dialect.name == "sqlite":
        # The audit trail is append-only, enforced by the database itself.
        conn.exec_driver_sql(
            "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit "
            "BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit "
            "WHEN (SELECT value FROM schema_info WHERE key = 'audit_prune') IS NULL "
            "BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END"
        )


# Migration N brings a store from schema N-1 to N. Never edit a released one:
# add the next number. Columns added later must have defaults so old rows load.
# Migration 1 creates the tables as they are now, so later ones check what they find.
def _add_prediction_log(conn: Connection) -> None:
    PredictionRow.__table__.create(conn, checkfirst=True)


# Schema 2 stored owners as user names.  A name whose user was deleted after the model
# was made may belong to someone else by now: such a model gets no owner, not the new
# holder of the name (an admin gives it one with `portal edit NAME --owner USER`).
_OWNER_BY_NAME = (
    "(SELECT u.id FROM users u WHERE u.name = models.owner AND NOT EXISTS ("
    "SELECT 1 FROM audit a WHERE a.action = 'user.delete' AND a.target = models.owner"
    " AND a.ts > models.created_at))"
)
# Schema 2 keyed the prediction log by model name: rows of a deleted model (or version)
# logged before its name was reused are not the new model's, and are dropped.
_MODEL_OF_ROW = (
    "(SELECT v.model_id FROM versions v JOIN models m ON m.id = v.model_id"
    " WHERE m.name = predictions.model AND v.number = predictions.version AND v.created_at <= predictions.ts)"
)


def _rebuild_sqlite(conn: Connection, table: Table, values: dict[str, str], where: str = "") -> None:
    """Re-create ``table`` as the model declares it and refill it (SQLite's way to change a table).

    ``values`` holds the SQL of the columns not copied as they are.  Foreign keys
    are off while migrating (see :func:`migrate`), so dropping the old table
    cascades nothing.
    """
    name = table.name
    ddl = str(CreateTable(table).compile(dialect=conn.dialect))
    conn.exec_driver_sql(ddl.replace(f"CREATE TABLE {name} (", f"CREATE TABLE {name}_new (", 1))
    columns = [c.name for c in table.columns]
    select_list = ", ".join(values.get(c, c) for c in columns)
    conn.exec_driver_sql(f"INSERT INTO {name}_new ({', '.join(columns)}) SELECT {select_list} FROM {name} {where}")
    conn.exec_driver_sql(f"DROP TABLE {name}")
    conn.exec_driver_sql(f"ALTER TABLE {name}_new RENAME TO {name}")
    for index in table.indexes:
        index.create(conn)


def _autoincrement(conn: Connection, name: str) -> bool:
    sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).scalar()
    return "AUTOINCREMENT" in str(sql).upper()


def _key_by_ids(conn: Connection) -> None:
    """Schema 3: owners by user id, the prediction log by model id, ids never reused."""
    columns = {t: {c["name"] for c in inspect(conn).get_columns(t)} for t in ("models", "predictions")}
    old_models, old_log = "owner" in columns["models"], "model" in columns["predictions"]
    if conn.dialect.name == "sqlite":
        # SQLite reuses the highest rowid of a deleted row unless the table says AUTOINCREMENT
        if not _autoincrement(conn, "users"):
            _rebuild_sqlite(conn, UserRow.__table__, {})
        if old_models:
            _rebuild_sqlite(conn, ModelRow.__table__, {"owner_id": _OWNER_BY_NAME})
        if old_log:
            _rebuild_sqlite(conn, PredictionRow.__table__, {"model_id": _MODEL_OF_ROW},
                            f"WHERE {_MODEL_OF_ROW} IS NOT NULL")
        return
    if old_models:
        conn.exec_driver_sql("ALTER TABLE models ADD COLUMN owner_id INTEGER REFERENCES users (id)")
        conn.exec_driver_sql(f"UPDATE models SET owner_id = {_OWNER_BY_NAME}")
        conn.exec_driver_sql("ALTER TABLE models DROP COLUMN owner")
    if old_log:
        conn.exec_driver_sql(
            "ALTER TABLE predictions ADD COLUMN model_id INTEGER REFERENCES models (id) ON DELETE CASCADE")
        conn.exec_driver_sql(f"UPDATE predictions SET model_id = {_MODEL_OF_ROW}")
        conn.exec_driver_sql("DELETE FROM predictions WHERE model_id IS NULL")
        conn.exec_driver_sql("ALTER TABLE predictions ALTER COLUMN model_id SET NOT NULL")
        conn.exec_driver_sql("ALTER TABLE predictions DROP COLUMN model")  # and its (model, version, ts) index
    for table in (ModelRow.__table__, PredictionRow.__table__):
        for index in table.indexes:
            index.create(conn, checkfirst=True)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _create_v1, 2: _add_prediction_log, 3: _key_by_ids}


def _current_version(conn: Connection) -> int:
    tables = set(inspect(conn).get_table_names())
    if "schema_info" not in tables:
        return 0
    row = conn.execute(select(SchemaInfoRow.value).where(SchemaInfoRow.key == "schema_version")).scalar()
    return int(row) if row is not None else 0


def migrate(engine: Engine) -> int:
    """Bring the schema to ``SCHEMA_VERSION``; return the version found before."""
    with engine.connect().execution_options(portal_write=True) as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # SQLite changes a table by re-creating it; with foreign keys on, dropping the old
            # one would cascade. The pragma is ignored inside a transaction, so it goes first.
            conn.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")  # type: ignore[union-attr]
        try:
            with conn.begin():
                found = _migrate(conn)
        finally:
            if sqlite:
                conn.connection.driver_connection.execute("PRAGMA foreign_keys = ON")  # type: ignore[union-attr]
    return found


def _migrate(conn: Connection) -> int:
    if conn.dialect.name == "postgresql":
        # several replicas may start at once: one migrates, the others wait and see it done
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7306241)")
    found = _current_version(conn)
    if found > SCHEMA_VERSION:
        raise PortalError(
            f"this store has schema version {found}, newer than this portal "
            f"understands ({SCHEMA_VERSION}); upgrade Model Portal to open it"
        )
    for number in range(found + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[number](conn)
        conn.execute(text("DELETE FROM schema_info WHERE key = 'schema_version'"))
        conn.execute(
            text("INSERT INTO schema_info (key, value) VALUES ('schema_version', :v)"),
            {"v": str(number)},
        )
    if conn.dialect.name == "sqlite" and found < SCHEMA_VERSION:
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise PortalError(
                f"cannot upgrade the store: {len(broken)} row(s) of {broken[0][0]!r} would point at missing "
                f"{broken[0][2]!r} rows; nothing was changed (the previous Model Portal still opens it)"
            )
    return found
