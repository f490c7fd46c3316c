"""Statements per event, counted in-process: what one ``process_event`` and the sends it
causes (outbox channel) cost in SQL round trips, for a label with its ``shipped`` email and a
scan with its ``out_for_delivery`` email. A SQLAlchemy ``before_cursor_execute`` listener
counts every statement the engine sends (``BEGIN``/``COMMIT`` issued by the driver are not
statements SQLAlchemy executes and are not counted; SQLite's explicit ``BEGIN IMMEDIATE`` is).

Also usable as a profiler harness: ``python -m bench.statements [sqlite|URL] [--profile N]``.
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bench import common
from bench.common import PHASES, Events  # bench/pipeline.py's bodies, with a salt of its own

MERCHANT = "benchstmts"


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.sending = 0
        self.texts: list[str] = []
        self.keep = False

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.n += 1
        if self.keep:
            self.texts.append(" ".join(statement.split())[:110])


def _setup(db_url: str, orders: list[str], **db_kwargs: Any) -> Any:
    from config import Settings
    from store.database import Database
    from workers.sending import Sender

    common.migrate(db_url)
    db = Database(db_url, **db_kwargs)
    common.seed_merchant(
        db,
        MERCHANT,
        name="Bench Statements",
        profile={"email_from": "shipping@bench.example", "order_ref_pattern": r"Order (\S+)"},
        orders=orders,
    )
    settings = replace(Settings(), database_url=db_url, signing_key="bench-signing-key")
    return db, Sender(settings, db, email=None, sms=None)


def _one(db: Any, sender: Any, body: str, now: datetime, counter: Counter | None = None) -> int:
    """Process one event and send what it planned; returns how many notifications were sent.
    ``counter``: its ``sending`` count is bumped by the statements of the sends."""
    from workers.processing import process_event

    outcome = process_event(db, MERCHANT, common.event_id_for(body), now, body, now)
    before = counter.n if counter is not None else 0
    for nid in outcome.notification_ids:
        sender.send(nid, on_deferred=lambda *_: None, on_alert=lambda *_: None, message_id=f"m{nid}")
    if counter is not None:
        counter.sending += counter.n - before
    return len(outcome.notification_ids)


def measure(db_url: str, orders: int = 20, show: bool = False) -> dict[str, Any]:
    """Average statements per event of each phase over ``orders`` orders: all of them, those of
    ``process_event`` (one transaction) and those of the sends it caused (outbox channel)."""
    events = Events(salt=f"s{secrets.token_hex(2)}")
    db, sender = _setup(db_url, [events.ref(i) for i in range(orders)])
    counter = Counter()
    event.listen(db.engine, "before_cursor_execute", counter)
    out: dict[str, Any] = {}
    try:
        for phase, _ in PHASES:
            counter.n, counter.sending, sent = 0, 0, 0
            for i in range(orders):
                counter.keep = show and i == orders - 1
                sent += _one(db, sender, events.body(phase, i), datetime.now(UTC), counter)
            out[phase] = {
                "statements_per_event": round(counter.n / orders, 2),
                "processing_statements_per_event": round((counter.n - counter.sending) / orders, 2),
                "send_statements_per_notification": round(counter.sending / sent, 2) if sent else None,
                "notifications_per_event": round(sent / orders, 2),
            }
            if show:
                print(f"-- {phase}: {counter.n / orders:.2f} statements/event", file=sys.stderr)
                for text in counter.texts:
                    print("   ", text, file=sys.stderr)
                counter.texts.clear()
    finally:
        event.remove(db.engine, "before_cursor_execute", counter)
        db.dispose()
    return out


def _profile(db_url: str, n: int) -> None:
    from pyinstrument import Profiler  # a developer tool, not a dependency

    events = Events(salt=f"p{secrets.token_hex(2)}")
    db, sender = _setup(db_url, [events.ref(i) for i in range(n)])
    profiler = Profiler(interval=0.0005)
    t0 = datetime.now(UTC)
    profiler.start()
    for phase, _ in PHASES:
        for i in range(n):
            _one(db, sender, events.body(phase, i), datetime.now(UTC))
    profiler.stop()
    took = (datetime.now(UTC) - t0).total_seconds()
    print(f"{3 * n} events in {took:.2f} s: {3 * n / took:.0f} events/s single thread", file=sys.stderr)
    print(profiler.output_text(unicode=False, color=False, show_all=False))
    db.dispose()


def threaded(db_url: str, n: int, threads: int, serialize_writers: bool) -> float:
    """Events per second of ``threads`` threads draining 3n events phase by phase (in-process,
    no broker): the SQLite writer lock measured both ways."""
    import queue
    import threading

    events = Events(salt=f"t{secrets.token_hex(2)}")
    db, sender = _setup(db_url, [events.ref(i) for i in range(n)], serialize_writers=serialize_writers)
    work: queue.Queue[str] = queue.Queue()
    for phase, _ in PHASES:
        for i in range(n):
            work.put(events.body(phase, i))

    def drain() -> None:
        while True:
            try:
                body = work.get_nowait()
            except queue.Empty:
                return
            _one(db, sender, body, datetime.now(UTC))

    import time

    t0 = time.perf_counter()
    pool = [threading.Thread(target=drain) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    took = time.perf_counter() - t0
    db.dispose()
    return 3 * n / took


if __name__ == "__main__":
    import tempfile

    args = sys.argv[1:]
    url = args[0] if args and not args[0].startswith("--") else "sqlite"
    if url == "sqlite":
        url = common.sqlite_url(Path(tempfile.mkdtemp(prefix="ph-stmts-")))
    if "--threads" in args:
        for rep in range(3):
            for flag in (False, True):
                u = common.sqlite_url(Path(tempfile.mkdtemp(prefix="ph-stmts-")))
                rate = threaded(u, 100, int(args[args.index("--threads") + 1]), flag)
                print(f"rep {rep} serialize_writers={flag}: {rate:.0f} events/s", file=sys.stderr)
    elif "--profile" in args:
        _profile(url, int(args[args.index("--profile") + 1]))
    else:
        print(measure(url, show=True))
