"""Per-merchant template overrides, keyed (merchant, kind, channel, locale)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.database import Database, utcnow
from store.schema import templates

_FIND = sa.select(templates).where(
    templates.c.merchant_id == sa.bindparam("merchant_id"),
    templates.c.kind == sa.bindparam("kind"),
    templates.c.channel == sa.bindparam("channel"),
    templates.c.locale.in_(sa.bindparam("locales", expanding=True)),
)


def find(
    conn: Connection, merchant_id: int, kind: str, channel: str, wanted: Sequence[str]
) -> tuple[str, dict[str, Any]] | None:
    """The merchant's template for the first of ``wanted`` locales (customer → merchant default → en)."""
    rows = {
        r.locale: r
        for r in conn.execute(
            _FIND, {"merchant_id": merchant_id, "kind": kind, "channel": channel, "locales": list(wanted)}
        )
    }
    for locale in wanted:
        if locale in rows:
            r = rows[locale]
            return locale, {"subject": r.subject, "text": r.text, "html": r.html}
    return None


def get(conn: Connection, merchant_id: int, kind: str, channel: str, locale: str) -> dict[str, Any] | None:
    row = conn.execute(
        sa.select(templates).where(
            templates.c.merchant_id == merchant_id,
            templates.c.kind == kind,
            templates.c.channel == channel,
            templates.c.locale == locale,
        )
    ).first()
    if row is None:
        return None
    return {
        "subject": row.subject,
        "text": row.text,
        "html": row.html,
        "updated_at": row.updated_at.isoformat(),
    }


def put(
    db: Database,
    conn: Connection,
    merchant_id: int,
    kind: str,
    channel: str,
    locale: str,
    subject: str | None,
    text: str,
    html: str | None,
) -> bool:
    """Store (insert or replace). Returns True when created."""
    existed = get(conn, merchant_id, kind, channel, locale) is not None
    values = {"subject": subject, "text": text, "html": html, "updated_at": utcnow()}
    if existed:
        conn.execute(
            templates.update()
            .where(
                templates.c.merchant_id == merchant_id,
                templates.c.kind == kind,
                templates.c.channel == channel,
                templates.c.locale == locale,
            )
            .values(**values)
        )
    else:
        conn.execute(
            templates.insert().values(
                merchant_id=merchant_id, kind=kind, channel=channel, locale=locale, **values
            )
        )
    return not existed


def delete(conn: Connection, merchant_id: int, kind: str, channel: str, locale: str) -> bool:
    result = conn.execute(
        templates.delete().where(
            templates.c.merchant_id == merchant_id,
            templates.c.kind == kind,
            templates.c.channel == channel,
            templates.c.locale == locale,
        )
    )
    return bool(result.rowcount)
