"""Shipments, their scan history and their timeline of changes.

``locate`` finds (or creates) the shipment an event belongs to and returns it locked for
this transaction: a Track joins by ``data.transaction``, then ``(carrier, tracking_number)``,
then a label whose carrier was not known yet; a Transaction joins by its ``object_id``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from domain.payload import LabelUpdate, Scan, TrackUpdate
from domain.shipment import Change, ShipmentState
from store.database import Database, DialectStatement, Lockable, utcnow
from store.schema import shipment_changes, shipment_scans, shipments
from store.types import as_utc


@dataclass(frozen=True)
class ShipmentRow:
    id: int
    merchant_id: int
    order_id: int | None
    order_ref: str | None
    state: ShipmentState
    version: int

    @property
    def key(self) -> str:
        """Stable per-shipment part of notification idempotency keys."""
        return f"s{self.id}"


def shipment_of(row: Any) -> ShipmentRow:
    """The :class:`ShipmentRow` of a result row (or anything with the same attributes)."""
    return ShipmentRow(
        id=row.id,
        merchant_id=row.merchant_id,
        order_id=row.order_id,
        order_ref=row.order_ref,
        state=ShipmentState.from_dict(row.state),
        version=row.version,
    )


_row = shipment_of

_INSERT = DialectStatement(lambda insert: insert(shipments).on_conflict_do_nothing().returning(*shipments.c))
_SAVE = shipments.update().where(
    shipments.c.id == sa.bindparam("shipment_id"), shipments.c.version == sa.bindparam("old_version")
)
_INSERT_SCANS = DialectStatement(lambda insert: insert(shipment_scans).on_conflict_do_nothing())
_INSERT_CHANGES = shipment_changes.insert()
_BY_ID = Lockable(sa.select(shipments).where(shipments.c.id == sa.bindparam("shipment_id")))
_FOR_ORDER = Lockable(
    sa.select(shipments).where(shipments.c.order_id == sa.bindparam("order_id")).order_by(shipments.c.id)
)


class _Join(Lockable):
    def __init__(self, *columns: str, null: str | None = None) -> None:
        self.null = null
        conditions = [shipments.c.merchant_id == sa.bindparam("merchant_id")]
        conditions += [shipments.c[c] == sa.bindparam(c) for c in columns]
        if null is not None:
            conditions.append(shipments.c[null].is_(None))
        super().__init__(sa.select(shipments).where(*conditions))


_by = _Join


#: The ways an event joins its shipment, each a statement built once (see :func:`locate`).
_BY_TRANSACTION = _by("transaction_id")
_BY_CARRIER_NUMBER = _by("carrier", "tracking_number")
_BY_NUMBER_NO_CARRIER = _by("tracking_number", null="carrier")
_BY_NUMBER_NO_TRANSACTION = _by("tracking_number", null="transaction_id")


#: The attempts of one kind of event, as ONE statement: the first attempt that matches wins
#: (``ORDER BY`` the attempt's rank; on PostgreSQL only the row returned is locked).
_FIRST_OF: dict[tuple[tuple[int, tuple[str, ...]], ...], Lockable] = {}


def _shape(attempts: Sequence[tuple[_Join, dict[str, Any]]]) -> tuple[tuple[int, tuple[str, ...]], ...]:
    return tuple((id(query), tuple(k for k, v in params.items() if v is None)) for query, params in attempts)


def _matches(
    attempts: Sequence[tuple[_Join, dict[str, Any]]], table: sa.FromClause
) -> list[sa.ColumnElement[bool]]:
    matches = []
    for i, (query, params) in enumerate(attempts):
        # `= NULL` matches nothing: a missing value is spelt `IS NULL`
        conditions = [
            table.c[k].is_(None) if v is None else table.c[k] == sa.bindparam(f"{k}_{i}")
            for k, v in params.items()
        ]
        if query.null is not None:
            conditions.append(table.c[query.null].is_(None))
        matches.append(sa.and_(*conditions))
    return matches


def first_of_statement(attempts: Sequence[tuple[_Join, dict[str, Any]]]) -> Lockable:
    """The attempts as one ``SELECT`` (LIMIT 1, the first attempt that matches wins); execute it
    with :func:`attempt_params`."""
    shape = _shape(attempts)
    found = _FIRST_OF.get(shape)
    if found is not None:
        return found
    matches = _matches(attempts, shipments)
    rank = sa.case(*((match, i) for i, match in enumerate(matches)), else_=len(matches))
    statement = Lockable(sa.select(shipments).where(sa.or_(*matches)).order_by(rank, shipments.c.id).limit(1))
    return _FIRST_OF.setdefault(shape, statement)


#: A new shipment's columns (see :func:`locate`), bound as ``new_<column>``.
_NEW_COLUMNS = (
    "merchant_id",
    "state",
    "created_at",
    "updated_at",
    "transaction_id",
    "carrier",
    "tracking_number",
)

#: ``INSERT … SELECT … WHERE NOT EXISTS (the attempts) ON CONFLICT DO NOTHING RETURNING *``: the
#: shipment created unless one of the attempts finds one, in ONE statement (per attempts' shape).
_CREATE_UNLESS_FOUND: dict[tuple[tuple[int, tuple[str, ...]], ...], DialectStatement] = {}


def _create_unless_found_statement(attempts: Sequence[tuple[_Join, dict[str, Any]]]) -> DialectStatement:
    shape = _shape(attempts)
    found = _CREATE_UNLESS_FOUND.get(shape)
    if found is not None:
        return found
    existing = shipments.alias("existing")
    values = sa.select(*(sa.bindparam(f"new_{c}", type_=shipments.c[c].type) for c in _NEW_COLUMNS)).where(
        ~sa.exists().where(sa.or_(*_matches(attempts, existing)))
    )
    statement = DialectStatement(
        lambda insert: (
            insert(shipments)
            .from_select(list(_NEW_COLUMNS), values)
            .on_conflict_do_nothing()
            .returning(*shipments.c)
        )
    )
    return _CREATE_UNLESS_FOUND.setdefault(shape, statement)


def _first_of(
    db: Database, conn: Connection, attempts: Sequence[tuple[_Join, dict[str, Any]]]
) -> ShipmentRow | None:
    """What the attempts, tried one after the other, would find first: in one round trip."""
    row = conn.execute(first_of_statement(attempts)(db), attempt_params(attempts)).first()
    return _row(row) if row else None


def attempt_params(attempts: Sequence[tuple[_Join, dict[str, Any]]]) -> dict[str, Any]:
    return {
        f"{k}_{i}": v for i, (_, attempt) in enumerate(attempts) for k, v in attempt.items() if v is not None
    }


#: How an event joins its shipment: the attempts in order, each a query and its parameters.
Attempts = list[tuple[_Join, dict[str, Any]]]


def attempts_of(merchant_id: int, event: TrackUpdate | LabelUpdate) -> tuple[Attempts, dict[str, Any]]:
    """The attempts that find ``event``'s shipment, and the identifiers of a new one."""
    m = merchant_id
    attempts: list[tuple[_Join, dict[str, Any]]] = []
    if isinstance(event, TrackUpdate):
        if event.transaction_id:
            attempts.append((_BY_TRANSACTION, {"merchant_id": m, "transaction_id": event.transaction_id}))
        attempts.append(
            (
                _BY_CARRIER_NUMBER,
                {"merchant_id": m, "carrier": event.carrier, "tracking_number": event.tracking_number},
            )
        )
        attempts.append((_BY_NUMBER_NO_CARRIER, {"merchant_id": m, "tracking_number": event.tracking_number}))
        new = {
            "transaction_id": event.transaction_id,
            "carrier": event.carrier,
            "tracking_number": event.tracking_number,
        }
    else:
        attempts.append((_BY_TRANSACTION, {"merchant_id": m, "transaction_id": event.object_id}))
        if event.tracking_number:
            if event.carrier:
                attempts.append(
                    (
                        _BY_CARRIER_NUMBER,
                        {
                            "merchant_id": m,
                            "carrier": event.carrier,
                            "tracking_number": event.tracking_number,
                        },
                    )
                )
            attempts.append(
                (_BY_NUMBER_NO_TRANSACTION, {"merchant_id": m, "tracking_number": event.tracking_number})
            )
        new = {
            "transaction_id": event.object_id,
            "carrier": event.carrier,
            "tracking_number": event.tracking_number,
        }
    return attempts, new


def locate(
    db: Database,
    conn: Connection,
    merchant_id: int,
    event: TrackUpdate | LabelUpdate,
    *,
    searched: bool = False,
) -> ShipmentRow:
    """``searched``: this transaction already ran the attempts of a track and found nothing."""
    attempts, new = attempts_of(merchant_id, event)
    now = utcnow()
    values = {
        "merchant_id": merchant_id,
        "state": ShipmentState.empty().to_dict(),
        "created_at": now,
        "updated_at": now,
    }
    if isinstance(event, LabelUpdate):
        # A label usually comes before its tracks: its shipment is created unless an attempt finds
        # one, in one statement (then the attempts are run again, locking what they find).
        inserted = conn.execute(
            _create_unless_found_statement(attempts)(db),
            {**attempt_params(attempts), **{f"new_{k}": v for k, v in {**values, **new}.items()}},
        ).first()
        if inserted is not None:  # ours, created in this transaction: nobody else can hold it
            return _row(inserted)
    elif not searched and (found := _first_of(db, conn, attempts)) is not None:
        return found
    else:
        inserted = conn.execute(_INSERT(db), {**values, **new}).first()
        if inserted is not None:  # ours, created in this transaction: nobody else can hold it
            return _row(inserted)
    if (found := _first_of(db, conn, attempts)) is not None:
        return found
    raise RuntimeError("shipment vanished between insert and select")  # cannot happen inside one transaction


#: :func:`save` on PostgreSQL, ONE statement (data-modifying CTEs): the versioned update, its new
#: scans and changes (inserted only when the update matched), and the order's OTHER shipments
#: in the statement's snapshot (the statement starts after the order's lock was granted; the
#: update itself is not visible to it, hence "other"). A NULL identifier keeps the stored one.
_SAVE_PG = sa.text(
    """
WITH saved AS (
  UPDATE shipments SET state = :state, status = :status, exception = :exception,
    last_scan_at = :last_scan_at, version = :version, updated_at = :updated_at,
    carrier = COALESCE(:carrier, carrier), tracking_number = COALESCE(:tracking_number, tracking_number),
    transaction_id = COALESCE(:transaction_id, transaction_id),
    order_id = COALESCE(:order_id, order_id), order_ref = COALESCE(:order_ref, order_ref)
  WHERE id = :shipment_id AND version = :old_version
  RETURNING id
), scans AS (
  INSERT INTO shipment_scans (shipment_id, scan_id, status, substatus, status_date, details, location)
  SELECT saved.id, s.scan_id, s.status, s.substatus, s.status_date, s.details, s.location
  FROM saved, ROWS FROM (json_to_recordset(CAST(:scans AS json))
    AS (scan_id text, status text, substatus text, status_date timestamptz, details text, location text))
    WITH ORDINALITY AS s(scan_id, status, substatus, status_date, details, location, n)
  ORDER BY s.n
  ON CONFLICT DO NOTHING
), changes AS (
  INSERT INTO shipment_changes (shipment_id, at, recorded_at, change)
  SELECT saved.id, c.at, :updated_at, c.change
  FROM saved, ROWS FROM (json_to_recordset(CAST(:changes AS json)) AS (at timestamptz, change json))
    WITH ORDINALITY AS c(at, change, n)
  ORDER BY c.n
)
SELECT (SELECT count(*) FROM saved) AS saved,
  o.id, o.merchant_id, o.order_id, o.order_ref, o.state, o.version
FROM (SELECT 1) AS one
LEFT JOIN shipments AS o ON o.order_id = :siblings_of AND o.id <> :shipment_id
ORDER BY o.id
"""
).bindparams(
    sa.bindparam("state", type_=shipments.c.state.type),
    sa.bindparam("last_scan_at", type_=shipments.c.last_scan_at.type),
    sa.bindparam("updated_at", type_=shipments.c.updated_at.type),
    sa.bindparam("order_id", type_=sa.Integer),
    sa.bindparam("siblings_of", type_=sa.Integer),
    sa.bindparam("scans", type_=sa.JSON),
    sa.bindparam("changes", type_=sa.JSON),
)


def save(
    db: Database,
    conn: Connection,
    shipment: ShipmentRow,
    state: ShipmentState,
    changes: Sequence[Change],
    new_scans: Iterable[Scan],
    *,
    order_id: int | None = None,
    order_ref: str | None = None,
    siblings_of: int | None = None,
) -> list[ShipmentRow] | None:
    """Write the shipment's new state (versioned), its new scans and its changes.
    ``siblings_of``: also return order ``siblings_of``'s OTHER shipments (ordered by id), read
    after the update (PostgreSQL: in the same statement); ``None`` when not asked."""
    now = utcnow()
    values: dict[str, Any] = {
        "state": state.to_dict(),
        "status": state.status.value if state.status else None,
        "exception": state.exception.cls.value if state.exception else None,
        "last_scan_at": state.last_scan_at,
        "version": shipment.version + 1,
        "updated_at": now,
    }
    scans = [
        {
            "shipment_id": shipment.id,
            "scan_id": scan.object_id,
            "status": scan.status,
            "substatus": scan.substatus_code,
            "status_date": scan.status_date,
            "details": scan.details,
            "location": scan.location.label() if scan.location else "",
        }
        for scan in new_scans
    ]
    if not db.is_sqlite:
        return _save_pg(conn, shipment, state, values, scans, changes, order_id, order_ref, siblings_of)
    # identifiers learnt from later events (a label tells the carrier, a track the transaction)
    for column in ("carrier", "tracking_number", "transaction_id"):
        if getattr(state, column):
            values[column] = getattr(state, column)
    if order_id is not None:
        values["order_id"] = order_id
    if order_ref is not None:
        values["order_ref"] = order_ref
    result = conn.execute(_SAVE, {**values, "shipment_id": shipment.id, "old_version": shipment.version})
    if result.rowcount != 1:
        raise RuntimeError(f"shipment {shipment.id} changed under us (version {shipment.version})")
    if scans:
        conn.execute(_INSERT_SCANS(db), scans if len(scans) > 1 else scans[0])
    if changes:
        rows = [
            {"shipment_id": shipment.id, "at": c.at, "recorded_at": now, "change": c.to_dict()}
            for c in changes
        ]
        conn.execute(_INSERT_CHANGES, rows if len(rows) > 1 else rows[0])
    if siblings_of is None:
        return None
    return [s for s in for_order(conn, siblings_of) if s.id != shipment.id]


def _save_pg(
    conn: Connection,
    shipment: ShipmentRow,
    state: ShipmentState,
    values: dict[str, Any],
    scans: list[dict[str, Any]],
    changes: Sequence[Change],
    order_id: int | None,
    order_ref: str | None,
    siblings_of: int | None,
) -> list[ShipmentRow] | None:
    rows = conn.execute(
        _SAVE_PG,
        {
            **values,
            # a falsy identifier keeps the stored one, as the SQLite path leaves it out
            **{c: getattr(state, c) or None for c in ("carrier", "tracking_number", "transaction_id")},
            "order_id": order_id,
            "order_ref": order_ref,
            "shipment_id": shipment.id,
            "old_version": shipment.version,
            "siblings_of": siblings_of,
            # timestamps as aware UTC ISO strings (UTCDateTime's rule), cast to timestamptz
            "scans": [{**s, "status_date": as_utc(s["status_date"]).isoformat()} for s in scans],
            "changes": [{"at": as_utc(c.at).isoformat(), "change": c.to_dict()} for c in changes],
        },
    ).all()
    if rows[0].saved != 1:
        raise RuntimeError(f"shipment {shipment.id} changed under us (version {shipment.version})")
    if siblings_of is None:
        return None
    return [_row(r) for r in rows if r.id is not None]


def for_order(conn: Connection, order_id: int, *, lock: Database | None = None) -> list[ShipmentRow]:
    return [_row(r) for r in conn.execute(_FOR_ORDER(lock), {"order_id": order_id})]


def pending_for_ref(db: Database, conn: Connection, merchant_id: int, ref: str) -> list[ShipmentRow]:
    query = sa.select(shipments).where(
        shipments.c.merchant_id == merchant_id, shipments.c.order_ref == ref, shipments.c.order_id.is_(None)
    )
    return [_row(r) for r in conn.execute(db.for_update(query))]


def get(conn: Connection, shipment_id: int) -> ShipmentRow:
    """The shipment, unlocked (for a view)."""
    return _row(conn.execute(_BY_ID(None), {"shipment_id": shipment_id}).one())


def get_locked(db: Database, conn: Connection, shipment_id: int) -> ShipmentRow:
    row = conn.execute(_BY_ID(db), {"shipment_id": shipment_id}).one()
    return _row(row)


def stall_candidates(
    conn: Connection, *, older_than: datetime, terminal: Sequence[str], limit: int
) -> list[int]:
    query = (
        sa.select(shipments.c.id)
        .where(
            shipments.c.last_scan_at < older_than,
            shipments.c.exception.is_(None),
            shipments.c.status.is_not(None),
            shipments.c.status.not_in(list(terminal)),
        )
        .order_by(shipments.c.last_scan_at)
        .limit(limit)
    )
    return [r.id for r in conn.execute(query)]


def history(conn: Connection, shipment_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(shipment_scans)
        .where(shipment_scans.c.shipment_id == shipment_id)
        .order_by(shipment_scans.c.status_date, shipment_scans.c.id)
    )
    return [
        {
            "status": r.status,
            "substatus": r.substatus,
            "status_date": r.status_date.isoformat(),
            "details": r.details,
            "location": r.location,
        }
        for r in rows
    ]


def timeline(conn: Connection, shipment_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(shipment_changes)
        .where(shipment_changes.c.shipment_id == shipment_id)
        .order_by(shipment_changes.c.id)
    )
    return [{**r.change, "recorded_at": r.recorded_at.isoformat()} for r in rows]
