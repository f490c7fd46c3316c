"""Per-merchant template overrides, keyed (merchant, kind, channel, locale).

Writes go through :func:`save`, which keeps a version of every change
(store/template_versions.py) in the same transaction as the template row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store import template_versions
from store.database import Database, utcnow
from store.schema import templates
from store.template_versions import Content, TemplateKey, Version

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


def get(conn: Connection, key: TemplateKey) -> dict[str, Any] | None:
    row = conn.execute(sa.select(templates).where(*key.where(templates))).first()
    if row is None:
        return None
    return {
        "subject": row.subject,
        "text": row.text,
        "html": row.html,
        "updated_at": row.updated_at.isoformat(),
    }


def put(db: Database, conn: Connection, key: TemplateKey, content: Content) -> bool:
    """Store ``content`` (insert or replace; not the default: see :func:`save`). Returns True
    when created."""
    existed = get(conn, key) is not None
    values = {**content.as_dict(), "updated_at": utcnow()}
    if existed:
        conn.execute(templates.update().where(*key.where(templates)).values(**values))
    else:
        conn.execute(templates.insert().values(**asdict(key), **values))
    return not existed


def delete(conn: Connection, key: TemplateKey) -> bool:
    result = conn.execute(templates.delete().where(*key.where(templates)))
    return bool(result.rowcount)


@dataclass(frozen=True)
class Saved:
    """What :func:`save` did: whether an override existed before, and the version it kept."""

    existed: bool
    version: Version


def save(
    db: Database,
    conn: Connection,
    key: TemplateKey,
    content: Content,
    *,
    saved_by: str,
    restored: int | None = None,
) -> Saved:
    """Write ``content`` (``content.is_default``: delete the override) and keep it as the next
    version, in the caller's transaction."""
    stored = get(conn, key)
    baseline = Content(stored["subject"], stored["text"], stored["html"]) if stored else None
    # the version first: on PostgreSQL its unique number orders concurrent saves, so the one
    # with the higher number also writes the template last (store/template_versions.py)
    version = template_versions.record(
        db, conn, key, content, saved_by=saved_by, baseline=baseline, restored=restored
    )
    existed = delete(conn, key) if content.is_default else not put(db, conn, key, content)
    return Saved(existed=existed, version=version)


def reset(db: Database, conn: Connection, key: TemplateKey, *, saved_by: str) -> Saved | None:
    """Back to the default (a ``DELETE``): a version when there was an override; ``None`` (and
    no version: nothing changed) when there was none."""
    if get(conn, key) is None:
        return None
    return save(db, conn, key, template_versions.DEFAULT, saved_by=saved_by)
