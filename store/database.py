"""Engine set-up and transactions for SQLite (embedded default, WAL) and PostgreSQL.

Writers that must not lose an update use ``Database.write()``: on SQLite it opens the
transaction with ``BEGIN IMMEDIATE`` (one writer at a time, readers keep going thanks
to WAL); on PostgreSQL callers lock the rows they change (``SELECT … FOR UPDATE``).

No customer data in errors or logs. Bound parameters are names, addresses, scan details,
so every engine is created with ``hide_parameters=True`` (errors and SQL logging show the
statement, never the values) and SQLAlchemy's debug logging of result rows is masked.
PostgreSQL also puts row values in the *server's* message (``DETAIL: Failing row contains
(…)``, ``Key (…)=(…) already exists``, ``invalid input syntax for type …: "…"``), which
``hide_parameters`` does not touch: a database error leaving ``write()``/``read()`` is
therefore re-raised as the same SQLAlchemy class around a same-class driver error whose
message keeps only the SQLSTATE, the schema names (table, column, constraint) and, for
connection/lock/resource failures, the server's primary message (see :func:`scrubbed`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from store.errors import StorageUnavailable

_WRITE = "parcelhook_write"


def utcnow() -> datetime:
    return datetime.now(UTC)


class _HideRows(logging.Filter):
    """SQLAlchemy logs every fetched row at DEBUG (``echo="debug"`` or a DEBUG logger): mask them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Row %r":
            record.args = ("[row hidden]",)
        return True


def _hide_rows() -> None:
    logger = logging.getLogger("sqlalchemy.engine.Engine")
    if not any(isinstance(f, _HideRows) for f in logger.filters):
        logger.addFilter(_HideRows())


#: SQLSTATE classes whose primary message is about the server, the connection or locks,
#: never about row values: connection exception, transaction rollback (deadlock,
#: serialization), insufficient resources, lock not available / object in use,
#: operator intervention, system error.
_SERVER_STATE_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})


def _clean_message(orig: BaseException | None) -> str:
    if orig is None:
        return "database error"
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is None:  # sqlite3: messages name the constraint/table, never the row's values
        return str(orig)
    diag = getattr(orig, "diag", None)
    names = [
        f"{what} {value}"
        for what, value in (
            ("table", getattr(diag, "table_name", None)),
            ("column", getattr(diag, "column_name", None)),
            ("constraint", getattr(diag, "constraint_name", None)),
        )
        if value
    ]
    text = f"{type(orig).__name__} (SQLSTATE {sqlstate})"
    if names:
        text += " on " + ", ".join(names)
    primary = getattr(diag, "message_primary", None)
    if primary and sqlstate[:2] in _SERVER_STATE_CLASSES:
        text += f": {primary}"
    return text


def scrubbed(exc: sa.exc.DBAPIError) -> sa.exc.DBAPIError:
    """The same error class, statement and cause, without any value the database echoed back."""
    message = _clean_message(exc.orig)
    orig: BaseException
    try:
        orig = type(exc.orig)(message) if exc.orig is not None else RuntimeError(message)
    except Exception:
        orig = RuntimeError(message)
    clean = type(exc)(
        exc.statement,
        None,
        orig,
        hide_parameters=True,
        connection_invalidated=exc.connection_invalidated,
        code=exc.code,
    )
    return clean.with_traceback(exc.__traceback__)


def create_engine(url: str, **kwargs: Any) -> Engine:
    kwargs.setdefault("hide_parameters", True)
    _hide_rows()
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get(_WRITE, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    engine = sa.create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_after_idle(engine)
    return engine


#: A pooled connection idle this long is pinged before use (a round trip); a busier one is used
#: as is. A server restart under load then fails one attempt per process, which invalidates the
#: whole pool (SQLAlchemy's disconnect handling) and is retried like any StorageUnavailable.
PING_AFTER_IDLE_S = 5.0
_CHECKED_IN_AT = "parcelhook_checked_in_at"


def _ping_after_idle(engine: Engine) -> None:
    """``pool_pre_ping`` (one ``SELECT 1`` per checkout), only for connections that sat idle."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN_AT)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return  # fresh from connect(), or in use moments ago
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                # as pre-ping does: this and every older pooled connection is replaced
                raise sa.exc.InvalidatePoolError() from exc
            raise


class DialectStatement:
    """A hot statement built once per dialect (SQLite / PostgreSQL ``INSERT … ON CONFLICT``),
    executed with parameter dicts only, so SQLAlchemy's compiled cache is hit without rebuilding
    the construct (its ``.values()``, coercions and cache key) for every call."""

    def __init__(self, build: Any) -> None:
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        self._by_dialect = {"sqlite": build(sqlite_insert), "postgresql": build(pg_insert)}

    def __call__(self, db: Database) -> Any:
        return self._by_dialect["sqlite" if db.is_sqlite else "postgresql"]


class Lockable:
    """A hot ``SELECT`` built once, in its plain and its ``FOR UPDATE`` form (the row lock is
    taken on PostgreSQL only: SQLite's ``BEGIN IMMEDIATE`` already serializes writers)."""

    def __init__(self, select: sa.Select[Any]) -> None:
        self.plain = select
        self.locking = select.with_for_update()

    def __call__(self, lock: Database | None) -> sa.Select[Any]:
        return self.plain if lock is None or lock.is_sqlite else self.locking


#: One lock per SQLite file in this process (see :meth:`Database.write`).
_sqlite_writers: dict[str, threading.RLock] = {}
_sqlite_writers_guard = threading.Lock()


def _writer_lock(url: str) -> threading.RLock:
    with _sqlite_writers_guard:
        return _sqlite_writers.setdefault(url, threading.RLock())


class Database:
    def __init__(self, url: str, *, serialize_writers: bool = True, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = create_engine(url, **engine_kwargs)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # SQLite has one writer at a time. Threads of this process queue on a lock instead of
        # inside SQLite's busy handler, which sleeps and polls (up to tens of ms per retry) while
        # the file is free; other processes still meet the busy timeout.
        self._writers = _writer_lock(str(self.engine.url)) if self.is_sqlite and serialize_writers else None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction; commit on success, rollback on error."""
        if self._writers is None:
            with self._write() as conn:
                yield conn
            return
        with self._writers, self._write() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{_WRITE: True})
                with conn.begin():
                    yield conn
        except sa.exc.OperationalError as exc:
            raise StorageUnavailable(_clean_message(exc.orig)) from scrubbed(exc)
        except sa.exc.DBAPIError as exc:
            raise scrubbed(exc) from None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except sa.exc.OperationalError as exc:
            raise StorageUnavailable(_clean_message(exc.orig)) from scrubbed(exc)
        except sa.exc.DBAPIError as exc:
            raise scrubbed(exc) from None

    def for_update(self, select: sa.Select[Any]) -> sa.Select[Any]:
        """Row lock on PostgreSQL; SQLite's BEGIN IMMEDIATE already serializes writers."""
        return select if self.is_sqlite else select.with_for_update()

    def insert(self, table: sa.Table) -> sqlite.Insert | postgresql.Insert:
        """Dialect insert supporting ``on_conflict_do_nothing``."""
        return sqlite.insert(table) if self.is_sqlite else postgresql.insert(table)

    def ping(self) -> None:
        with self.read() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
