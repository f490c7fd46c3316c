"""Versions of merchant templates: every save of a template (and every return to the default)
keeps one, numbered 1, 2, 3 … per (merchant, kind, channel, locale), in the transaction that
writes the template itself.

Concurrency: the number is the latest one plus one, and ``uq_template_versions_version`` makes it
unique. On SQLite writers are serialized (``BEGIN IMMEDIATE``), so two saves never read the same
latest number. On PostgreSQL two concurrent saves can: the second insert of number N waits on the
first one's uncommitted row, fails once it commits, and :func:`record` retries (inside a
savepoint, so the surrounding save survives) with the number after the one now committed. The
version is written *before* the template row, so the save that gets the higher number is also the
one whose template write lands last: the template always equals its latest version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.cursor import Cursor
from store.database import Database, utcnow
from store.errors import Conflict
from store.schema import template_versions

#: The fields a version holds and its change summary compares.
FIELDS = ("subject", "text", "html")

#: How many times a save tries the next number after a concurrent save took it (PostgreSQL).
ATTEMPTS = 20

#: The cursor of :func:`page`: the number of the last version shown.
CURSOR = Cursor("v")

_tv = template_versions.c


@dataclass(frozen=True)
class Content:
    """What a template is: its fields, or ``text is None`` for "the shipped default"."""

    subject: str | None
    text: str | None
    html: str | None

    @property
    def is_default(self) -> bool:
        return self.text is None

    def as_dict(self) -> dict[str, str | None]:
        return {"subject": self.subject, "text": self.text, "html": self.html}


DEFAULT = Content(None, None, None)


@dataclass(frozen=True)
class TemplateKey:
    """Which template: merchant ``merchant_id``'s ``kind`` message on ``channel`` in ``locale``
    (the key of a template override, and of its versions)."""

    merchant_id: int
    kind: str
    channel: str
    locale: str

    def where(self, table: sa.Table) -> tuple[sa.ColumnElement[bool], ...]:
        """The conditions selecting this key's rows of ``table`` (templates, template_versions)."""
        return (
            table.c.merchant_id == self.merchant_id,
            table.c.kind == self.kind,
            table.c.channel == self.channel,
            table.c.locale == self.locale,
        )


@dataclass(frozen=True)
class Version:
    version: int
    content: Content
    saved_by: str
    saved_at: datetime
    change: dict[str, Any]

    def to_public(self, *, with_content: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "version": self.version,
            "source": "default" if self.content.is_default else "merchant",
            "saved_by": self.saved_by,
            "saved_at": self.saved_at.isoformat(),
            "change": self.change,
        }
        if with_content:
            body.update(self.content.as_dict())
        return body


def _row(r: Any) -> Version:
    return Version(
        version=r.version,
        content=Content(r.subject, r.text, r.html),
        saved_by=r.saved_by,
        saved_at=r.saved_at,
        change=dict(r.change or {}),
    )


def changed_fields(before: Content | None, after: Content) -> list[str]:
    """The fields whose value differs, in :data:`FIELDS` order (``before`` None: nothing before)."""
    old = (before or DEFAULT).as_dict()
    new = after.as_dict()
    return [f for f in FIELDS if old[f] != new[f]]


def latest(conn: Connection, key: TemplateKey) -> Version | None:
    row = conn.execute(
        sa.select(template_versions)
        .where(*key.where(template_versions))
        .order_by(_tv.version.desc())
        .limit(1)
    ).first()
    return _row(row) if row else None


def get(conn: Connection, key: TemplateKey, version: int) -> Version | None:
    row = conn.execute(
        sa.select(template_versions).where(*key.where(template_versions), _tv.version == version)
    ).first()
    return _row(row) if row else None


def page(
    conn: Connection, key: TemplateKey, *, limit: int, before: int | None
) -> tuple[list[Version], str | None]:
    """Newest first, keyset-paginated on the version number; the next page's cursor or None."""
    query = sa.select(template_versions).where(*key.where(template_versions))
    if before is not None:
        query = query.where(_tv.version < before)
    rows = conn.execute(query.order_by(_tv.version.desc()).limit(limit + 1)).all()
    found = [_row(r) for r in rows[:limit]]
    return found, CURSOR.encode(found[-1].version) if len(rows) > limit else None


def record(
    db: Database,
    conn: Connection,
    key: TemplateKey,
    content: Content,
    *,
    saved_by: str,
    baseline: Content | None = None,
    restored: int | None = None,
    now: datetime | None = None,
) -> Version:
    """Keep ``content`` as the next version, in the caller's transaction (before it writes the
    template row, see the module docstring). ``baseline``: what the template was when no version
    exists yet (a template saved before versions were kept), for the change summary.
    ``restored``: the version this save restores.

    The change summary is ``{"fields": [changed fields], "previous": <number or null>}``, plus
    ``"restored": n`` for a restore."""
    now = now or utcnow()
    for _ in range(ATTEMPTS):
        previous = latest(conn, key)
        before = previous.content if previous is not None else baseline
        change: dict[str, Any] = {
            "fields": changed_fields(before, content),
            "previous": previous.version if previous is not None else None,
        }
        if restored is not None:
            change["restored"] = restored
        number = previous.version + 1 if previous is not None else 1
        values = {
            **asdict(key),
            "version": number,
            **content.as_dict(),
            "saved_by": saved_by,
            "saved_at": now,
            "change": change,
        }
        try:
            with conn.begin_nested():  # a savepoint: a lost race undoes this insert only
                conn.execute(template_versions.insert().values(**values))
        except sa.exc.IntegrityError:
            if db.is_sqlite:
                raise  # writers are serialized: a conflict here is a real bug, not a race
            continue  # a concurrent save committed this number: take the next one
        return Version(number, content, saved_by, now, change)
    raise Conflict("the template is being saved by many requests at once; retry")
