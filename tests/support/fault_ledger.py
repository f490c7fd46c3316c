"""What a fault run must add up to, read from the database and from the providers themselves.

* every webhook the receiver answered 200 has its ``deliveries`` row (nothing accepted is lost);
* every order ends delivered and its customer got the ``delivered`` message on each channel they
  asked for: exactly once at the provider (SMTP server, Twilio-compatible server) — or, when a
  worker was killed inside the provider call, the row says ``outcome_unknown`` and the provider
  has at most one copy (the documented at-most-once case, counted apart as "uncertain");
* nothing was sent twice: no Message-ID twice at the SMTP server, no (To, Body) twice at Twilio;
* no notification is left unresolved (queued/sending) and no merchant got a false alert.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from store.schema import deliveries, notifications, orders
from tests.support.fault_rig import Rig, wait
from tests.support.shippo_traffic import Parcel, SendReport

RESULTS = Path(
    os.environ.get(
        "PARCELHOOK_FAULT_RESULTS", Path(__file__).resolve().parents[1] / "artifacts" / "fault-results.jsonl"
    )
)
UNRESOLVED = ("queued", "sending")


@dataclass
class Ledger:
    scenario: str
    database: str
    webhooks: int
    accepted: int  # distinct events answered 200
    processed: int  # of those, committed
    expected: int  # customer messages the final states call for
    sent: int  # of those, recorded sent and at the provider exactly once
    uncertain: int  # of those, outcome_unknown (a kill inside the provider call): at most once
    duplicated: int  # extra copies at the providers
    recovery_s: float | None
    notes: str = ""

    def row(self) -> str:
        recovery = "—" if self.recovery_s is None else f"{self.recovery_s:.1f} s"
        return (
            f"| {self.scenario} | {self.database} | {self.webhooks} | {self.accepted} | {self.processed} | "
            f"{self.expected} / {self.sent} / {self.uncertain} / {self.duplicated} | {recovery} |"
        )


def _engine(rig: Rig) -> sa.Engine:
    return sa.create_engine(rig.database_url, pool_pre_ping=True, hide_parameters=True)


def _processed(engine: sa.Engine, event_ids: set[str]) -> int:
    with engine.connect() as conn:
        found = {r[0] for r in conn.execute(sa.select(deliveries.c.event_id))}
    return len(event_ids & found)


def _rows(engine: sa.Engine) -> list[Any]:
    query = sa.select(
        notifications.c.id,
        notifications.c.kind,
        notifications.c.channel,
        notifications.c.audience,
        notifications.c.status,
        notifications.c.error_code,
        notifications.c.provider_id,
        notifications.c.to_address,
        notifications.c.idempotency_key,
        orders.c.ref,
    ).select_from(notifications.outerjoin(orders, orders.c.id == notifications.c.order_id))
    with engine.connect() as conn:
        return list(conn.execute(query))


def _final_delivered(row: Any) -> bool:
    """The customer's ``delivered`` message has its final outcome: sent, or the honest uncertain case."""
    if row.audience != "customer" or row.kind != "delivered":
        return False
    return bool(
        row.status in ("sent", "delivered")
        or (row.status == "failed" and row.error_code == "outcome_unknown")
    )


def _sent_but_not_at_provider(rig: Rig, rows: list[Any]) -> set[tuple[str, str]]:
    """``delivered`` rows recorded sent whose message the provider never received (a recorded lie)."""
    from notifiers.smtp import message_id_for

    email_ids = {str(m.message["Message-ID"]) for m in rig.smtp.messages}
    sms_ids = {m.get("sid") for m in rig.twilio.messages}
    return {
        (r.ref, r.channel)
        for r in rows
        if _final_delivered(r)
        and r.status != "failed"
        and (
            message_id_for(r.idempotency_key) not in email_ids
            if r.channel == "email"
            else r.provider_id not in sms_ids
        )
    }


def _queues_idle(rig: Rig) -> bool:
    stats = rig.admin_get("/api/ops/queues")["queues"]
    return all(q["ready"] == 0 and q["delayed"] == 0 and q["in_flight"] == 0 for q in stats)


def duplicates_at_providers(rig: Rig) -> list[str]:
    """One line per extra copy a provider received: same Message-ID at SMTP, same (To, Body) at Twilio."""
    ids = Counter(
        (str(m.message["Message-ID"]), str(m.message["To"]), str(m.message["Subject"]))
        for m in rig.smtp.messages
    )
    texts = Counter((m.get("to"), m.get("body")) for m in rig.twilio.messages)
    return [f"email {key} ×{n}" for key, n in ids.items() if n > 1] + [
        f"sms {key} ×{n}" for key, n in texts.items() if n > 1
    ]


def settle(
    rig: Rig,
    scenario: str,
    parcels: list[Parcel],
    report: SendReport,
    *,
    fault_over_at: float | None,
    timeout_s: float = 180,
    unreachable: frozenset[tuple[str, str]] = frozenset(),
    notes: str = "",
) -> Ledger:
    """Wait (bounded) until everything accepted is processed and every expected message is out, then
    count. ``unreachable``: (order ref, channel) pairs the scenario made undeliverable on purpose."""
    timeout_s += 0.1 * report.sent  # a bigger stream (make proof) has a bigger backlog to catch up
    engine = _engine(rig)
    expected_pairs = {(p.ref, "email") for p in parcels} | {(p.ref, "sms") for p in parcels if p.phone}
    expected_pairs -= unreachable

    def delivered_pairs(rows: list[Any] | None = None) -> set[tuple[str, str]]:
        return {
            (r.ref, r.channel) for r in (rows if rows is not None else _rows(engine)) if _final_delivered(r)
        }

    def uncertain_pairs(rows: list[Any]) -> set[tuple[str, str]]:
        return {(r.ref, r.channel) for r in rows if _final_delivered(r) and r.status == "failed"}

    def done() -> bool:
        if _processed(engine, report.accepted) < len(report.accepted):
            return False
        rows = _rows(engine)
        if any(r.status in UNRESOLVED for r in rows):
            return False
        return expected_pairs <= delivered_pairs() and _queues_idle(rig)

    try:
        try:
            wait(
                done,
                timeout_s,
                f"{scenario}: everything accepted processed and every expected message out",
                every=0.5,
            )
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\n{_state(rig, engine, report, expected_pairs, delivered_pairs())}"
            ) from None
        recovered_at = time.monotonic()
    finally:
        duplicates = duplicates_at_providers(rig)
        rows = _rows(engine)
        missing = _sent_but_not_at_provider(rig, rows)
        processed = _processed(engine, report.accepted)
        engine.dispose()
    ledger = Ledger(
        scenario=scenario,
        database="PostgreSQL" if rig.pg is not None else "SQLite",
        webhooks=report.sent,
        accepted=len(report.accepted),
        processed=processed,
        expected=len(expected_pairs),
        sent=len((expected_pairs & delivered_pairs(rows)) - uncertain_pairs(rows) - missing),
        uncertain=len(expected_pairs & uncertain_pairs(rows)),
        duplicated=sum(int(line.rsplit("×", 1)[1]) - 1 for line in duplicates),
        recovery_s=None if fault_over_at is None else round(recovered_at - fault_over_at, 1),
        notes="; ".join([notes, *duplicates[:5]]).strip("; "),
    )
    print("\n" + ledger.row())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as out:
        out.write(json.dumps(asdict(ledger)) + "\n")
    return ledger


def _state(
    rig: Rig,
    engine: sa.Engine,
    report: SendReport,
    expected: set[tuple[str, str]],
    delivered: set[tuple[str, str]],
) -> str:
    """What is still missing when a scenario does not settle: the first thing to read at 3 a.m."""
    rows = _rows(engine)
    try:
        queues = rig.admin_get("/api/ops/queues")
    except Exception as exc:
        queues = {"error": repr(exc)}
    return "\n".join(
        [
            f"unprocessed accepted events: {len(report.accepted) - _processed(engine, report.accepted)}",
            f"notification rows by status: {dict(Counter((r.audience, r.kind, r.status) for r in rows))}",
            f"unresolved rows: {[(r.id, r.ref, r.kind, r.channel, r.status, r.error_code) for r in rows if r.status in UNRESOLVED][:10]}",
            f"expected but not sent: {sorted(expected - delivered)[:10]}",
            f"queues: {queues}",
            f"restarts: {rig.restarts}",
        ]
    )


def assert_kept_its_word(ledger: Ledger, rig: Rig, report: SendReport, *, max_uncertain: int = 0) -> None:
    assert report.refused == [], f"the receiver refused realistic webhooks: {report.refused[:3]}"
    assert report.gave_up == 0, "the sender gave up on webhooks (the receiver stayed unavailable)"
    assert ledger.processed == ledger.accepted, "an accepted webhook was lost"
    assert ledger.sent + ledger.uncertain == ledger.expected, (
        "a customer missed the message their order's final state calls for"
    )
    assert ledger.uncertain <= max_uncertain, (
        f"{ledger.uncertain} outcomes unknown: more than the faults can explain"
    )
    assert ledger.duplicated == 0, f"a customer got the same message twice: {ledger.notes}"


def failure_alerts(rig: Rig) -> list[Any]:
    engine = _engine(rig)
    try:
        return [r for r in _rows(engine) if r.audience == "merchant" and r.kind == "notification_failed"]
    finally:
        engine.dispose()


def table(path: Path = RESULTS) -> str:
    """The README's *What it survives* table from the last run's rows."""
    header = (
        "| scenario | database | webhooks sent | accepted (distinct) | processed | "
        "customer messages expected / sent / outcome unknown / duplicated | recovery after the fault |\n"
        "|---|---|---|---|---|---|---|"
    )
    rows = [Ledger(**json.loads(line)).row() for line in path.read_text().splitlines() if line.strip()]
    return "\n".join([header, *rows])


if __name__ == "__main__":
    print(table())
