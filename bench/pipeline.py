"""`pipeline`: events per second from the queue to committed state AND a rendered message in the
outbox, for ONE worker process (``dramatiq workers.main --processes 1 --threads 4``).

Per database (SQLite always; PostgreSQL too when ``initdb`` exists):

1. *drain*: N registered orders (customer email, email opt-in, ``order_ref_pattern``), their
   label, transit and out-for-delivery webhooks (3N events, queued phase by phase like Shippo
   sends them) pre-filled on the ``events`` queue; then the worker starts and we poll the
   database until every delivery row is committed and every planned notification (``shipped``
   + ``out_for_delivery`` email per order = 2N) is ``sent`` with its outbox row. Rate =
   events / (first ``deliveries.processed_at`` → last ``notifications.sent_at``), so the
   worker's boot is not counted; the wall time including boot is reported beside it.
2. *latency*: a fixed offered load (default 30 events/s) of new orders' events with the worker
   running; latency = enqueue time → ``deliveries.processed_at`` (state committed, the row's
   timestamp is taken in the committing transaction) and enqueue time → the notification's
   ``sent_at`` (message in the outbox).

3. *e2e*: the Procfile's worker (2 processes × 4 threads) on PostgreSQL (SQLite without it),
   100 events/s for 60 s after a warm-up: enqueue → commit and enqueue → outbox.

Correctness (every phase, :func:`verify_notifications`): what the product rules say must have
been sent, whatever order the threads applied an order's events in. Statements per event:
``bench/statements.py``, in-process on each database.

Floor: ``bench/noop_worker.py`` (dramatiq's no-op actor, same Redis, same namespace, same
worker flags): messages per second drained from a pre-filled queue.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import common
from bench.common import PHASES, BenchError, Events, say

MERCHANT = "benchpipe"
WORKER_FLAGS = ["--processes", "1", "--threads", "4"]
PROCFILE_FLAGS = ["--processes", "2", "--threads", "4"]  # the Procfile's defaults (WORKER_PROCESSES/THREADS)
NOTIFICATIONS_PER_ORDER = (
    2  # shipped (label) + out_for_delivery, email only; in_transit is not emailed by default
)


def params(quick: bool) -> dict[str, Any]:
    return {
        "worker": "dramatiq workers.main " + " ".join(WORKER_FLAGS),
        "orders": 60 if quick else 300,
        "events_per_order": len(PHASES),
        "notifications_per_order": NOTIFICATIONS_PER_ORDER,
        "offered_rate_per_s": 30,
        "offered_seconds": 5 if quick else 20,
        "e2e_worker": "dramatiq workers.main " + " ".join(PROCFILE_FLAGS),
        "e2e_rate_per_s": 100,
        "e2e_seconds": 15 if quick else 60,
        "noop_messages": 3000 if quick else 10000,
        "drain_timeout_s": 120 if quick else 300,
        "postgres": common.postgres_available(),
    }


def _broker_for(redis_url: str) -> Any:
    """``process_event``, bound to a broker on our Redis built the way the workers build theirs."""
    from dataclasses import replace

    from config import Settings
    from workers.actors import bind, process_event
    from workers.broker import build_broker

    bind(build_broker(replace(Settings(), broker_url=redis_url)))
    return process_event


def _prepare(db_url: str, orders: list[str]) -> int:
    from store.database import Database

    common.migrate(db_url)
    db = Database(db_url)
    try:
        return common.seed_merchant(
            db,
            MERCHANT,
            name="Bench Pipeline",
            profile={
                "email_from": "shipping@bench.example",
                "support_email": "help@bench.example",
                "order_ref_pattern": r"Order (\S+)",
            },
            orders=orders,
            customer_of=lambda ref: common.customer(ref, timezone="America/New_York"),
        ).id
    finally:
        db.dispose()


def _send(process_event: Any, events: Events, orders: int, received_at: str) -> None:
    """Every order's events, Shippo's order: every label, then the scans (FIFO keeps it so)."""
    for phase, _ in PHASES:
        for i in range(orders):
            body = events.body(phase, i)
            process_event.send(MERCHANT, common.event_id_for(body), received_at, body)


@contextmanager
def _worker(
    redis: common.Redis, db_url: str, workdir: Path, flags: list[str], log_name: str
) -> Iterator[tuple[Any, Any, Path]]:
    """``dramatiq <flags> workers.main`` on this database and Redis while in the block, with a
    ``Database`` to watch it by: (database, worker process, its log)."""
    from store.database import Database

    log = workdir / log_name
    env = common.app_env(workdir, db_url, redis.url)
    db = Database(db_url)
    worker = common.spawn([str(common.VENV_BIN / "dramatiq"), *flags, "workers.main"], env=env, log=log)
    try:
        yield db, worker, log
    finally:
        common.stop_process(worker, timeout=30)
        db.dispose()


def _state(db: Any, merchant_id: int) -> dict[str, Any]:
    from store.schema import deliveries, notifications, outbox_messages

    with db.read() as conn:
        delivered = conn.execute(
            sa.select(deliveries.c.outcome, sa.func.count())
            .where(deliveries.c.merchant_id == merchant_id)
            .group_by(deliveries.c.outcome)
        ).all()
        notes = conn.execute(
            sa.select(notifications.c.status, sa.func.count())
            .where(notifications.c.merchant_id == merchant_id)
            .group_by(notifications.c.status)
        ).all()
        outbox = conn.execute(
            sa.select(sa.func.count())
            .select_from(outbox_messages)
            .where(outbox_messages.c.merchant_id == merchant_id)
        ).scalar_one()
    return {
        "deliveries": {k: int(v) for k, v in delivered},
        "notifications": {k: int(v) for k, v in notes},
        "outbox": int(outbox),
    }


def _complete(state: dict[str, Any], events: int) -> bool:
    """Every delivery committed (its notification intents are written in the same transaction)
    and no intent still waiting for its send."""
    n = state["notifications"]
    return bool(
        sum(state["deliveries"].values()) >= events
        and n.get("queued", 0) == 0
        and n.get("sending", 0) == 0
        and state["outbox"] >= n.get("sent", 0)
    )


def _wait(db: Any, merchant_id: int, events: int, timeout: float, worker: Any, log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    state = _state(db, merchant_id)
    while not _complete(state, events):
        if worker.poll() is not None:
            raise BenchError(f"the worker exited with {worker.returncode}:\n{common.log_tail(log)}")
        if time.monotonic() > deadline:
            raise BenchError(f"not done after {timeout}s: {state}\n{common.log_tail(log)}")
        time.sleep(0.2)
        state = _state(db, merchant_id)
    return state


def _timestamps(db: Any, merchant_id: int, refs: set[str] | None = None) -> tuple[list[Any], list[Any]]:
    from store.schema import deliveries, notifications, orders

    with db.read() as conn:
        d = conn.execute(
            sa.select(deliveries.c.event_id, deliveries.c.received_at, deliveries.c.processed_at).where(
                deliveries.c.merchant_id == merchant_id
            )
        ).all()
        n = conn.execute(
            sa.select(orders.c.ref, notifications.c.kind, notifications.c.status, notifications.c.sent_at)
            .join(orders, orders.c.id == notifications.c.order_id)
            .where(notifications.c.merchant_id == merchant_id)
        ).all()
    if refs is not None:
        n = [r for r in n if r.ref in refs]
    return d, n


def verify_notifications(db: Any, merchant_id: int, refs: set[str]) -> tuple[dict[str, int], list[str]]:
    """What the product rules say must have happened to these orders' emails, whatever order
    four threads applied their events in (deterministic, unlike "2 per order"):

    * every notification row is final (``sent`` or ``suppressed``), and every ``sent`` one has
      exactly its outbox message;
    * every order has exactly one ``out_for_delivery`` email, ``sent`` (its scan is the last);
    * every order has at most one ``shipped`` email: ``sent``, or ``suppressed`` as superseded
      (the send ran after a later scan), or never planned (the label was applied after a
      later scan: status never regresses, so "shipped" is old news).
    """
    from store.schema import notifications, orders, outbox_messages

    with db.read() as conn:
        rows = conn.execute(
            sa.select(
                orders.c.ref,
                notifications.c.kind,
                notifications.c.channel,
                notifications.c.status,
                notifications.c.error,
                sa.func.count(outbox_messages.c.id).label("outbox"),
            )
            .join(orders, orders.c.id == notifications.c.order_id)
            .outerjoin(outbox_messages, outbox_messages.c.notification_id == notifications.c.id)
            .where(notifications.c.merchant_id == merchant_id)
            .group_by(
                notifications.c.id,
                orders.c.ref,
                notifications.c.kind,
                notifications.c.channel,
                notifications.c.status,
                notifications.c.error,
            )
        ).all()
    rows = [r for r in rows if r.ref in refs]
    problems: list[str] = []
    counts = {"sent": 0, "shipped_sent": 0, "shipped_superseded": 0, "shipped_not_planned": 0, "ofd_sent": 0}
    per_order: dict[str, dict[str, list[Any]]] = {ref: {} for ref in refs}
    for r in rows:
        if r.status not in ("sent", "suppressed"):
            problems.append(f"{r.ref} {r.kind}/{r.channel} is {r.status}")
        if r.outbox != (1 if r.status == "sent" else 0):
            problems.append(f"{r.ref} {r.kind}/{r.channel} {r.status} has {r.outbox} outbox messages")
        counts["sent"] += r.status == "sent"
        if r.channel == "email":
            per_order[r.ref].setdefault(r.kind, []).append(r)
    for ref, kinds in per_order.items():
        ofd = kinds.get("out_for_delivery", [])
        if [r.status for r in ofd] != ["sent"]:
            problems.append(f"{ref}: out_for_delivery emails {[r.status for r in ofd]} (expected one sent)")
        counts["ofd_sent"] += sum(r.status == "sent" for r in ofd)
        shipped = kinds.get("shipped", [])
        if len(shipped) > 1:
            problems.append(f"{ref}: {len(shipped)} shipped emails")
        for r in shipped:
            if r.status == "sent":
                counts["shipped_sent"] += 1
            elif r.status == "suppressed" and (r.error or "").startswith("superseded"):
                counts["shipped_superseded"] += 1
            else:
                problems.append(f"{ref}: shipped email {r.status} ({r.error})")
        counts["shipped_not_planned"] += not shipped
    return counts, problems[:10]


@dataclass
class _Drained:
    """A pre-filled queue drained by a worker that is still running (for what comes next)."""

    drain: dict[str, Any]
    problems: list[str]
    state: dict[str, Any]
    db: Any
    worker: Any
    log: Path
    merchant_id: int


@contextmanager
def _drained(
    process_event: Any,
    redis: common.Redis,
    db_url: str,
    workdir: Path,
    p: dict[str, Any],
    label: str,
    flags: list[str],
    *,
    also_register: tuple[str, ...] = (),
) -> Iterator[_Drained]:
    """Pre-fill ``p["orders"]`` orders' events, start ``dramatiq <flags> workers.main``, wait until
    every event is committed and every email is in the outbox; yield with the worker running."""
    events = Events(salt=f"d{secrets.token_hex(2)}")
    refs = [events.ref(i) for i in range(p["orders"])]
    merchant_id = _prepare(db_url, refs + list(also_register))
    total_events = p["orders"] * len(PHASES)
    total_notes = p["orders"] * NOTIFICATIONS_PER_ORDER
    with redis.client() as client:
        client.delete(common.EVENTS_KEY, f"{common.EVENTS_KEY}.msgs")
        t_fill = time.monotonic()
        _send(process_event, events, p["orders"], datetime.now(UTC).isoformat())
        fill_s = time.monotonic() - t_fill
        queued = client.llen(common.EVENTS_KEY)
    if queued != total_events:
        raise BenchError(f"pre-filled {queued} messages, expected {total_events}")
    say(f"{label}: {total_events} events pre-filled in {fill_s:.1f} s; starting the worker")
    with _worker(redis, db_url, workdir, flags, f"worker-{label}.log") as (db, worker, log):
        t_start = time.monotonic()
        state = _wait(db, merchant_id, total_events, p["drain_timeout_s"], worker, log)
        wall = time.monotonic() - t_start
        deliveries_rows, note_rows = _timestamps(db, merchant_id, set(refs))
        first = min(r.processed_at for r in deliveries_rows)
        last = max([r.sent_at for r in note_rows if r.sent_at] + [r.processed_at for r in deliveries_rows])
        busy = (last - first).total_seconds()
        drain = {
            "worker": "dramatiq workers.main " + " ".join(flags),
            "orders": p["orders"],
            "events": total_events,
            "notifications_planned": total_notes,
            "state_after": state,
            "busy_seconds": round(busy, 3),
            "wall_seconds_incl_worker_boot": round(wall, 3),
            "events_per_second": round(total_events / busy, 1) if busy > 0 else 0.0,
            "messages_per_second": round((total_events + total_notes) / busy, 1) if busy > 0 else 0.0,
        }
        problems = []
        if state["deliveries"].get("processed", 0) != total_events:
            problems.append(f"deliveries: {state['deliveries']} (expected {total_events} processed)")
        drain["notifications"], wrong = verify_notifications(db, merchant_id, set(refs))
        problems.extend(wrong)
        say(
            f"{label}: drained {total_events} events + {total_notes} notifications in {busy:.1f} s "
            f"→ {drain['events_per_second']} events/s (wall incl. boot {wall:.1f} s)"
        )
        yield _Drained(drain, problems, state, db, worker, log, merchant_id)


def _drain(
    process_event: Any, redis: common.Redis, db_url: str, workdir: Path, p: dict[str, Any], label: str
) -> dict[str, Any]:
    latency_events = Events(salt=f"l{secrets.token_hex(2)}")
    latency_orders = p["offered_rate_per_s"] * p["offered_seconds"] // len(PHASES)
    latency_refs = [latency_events.ref(i) for i in range(latency_orders)]
    with _drained(
        process_event, redis, db_url, workdir, p, label, WORKER_FLAGS, also_register=tuple(latency_refs)
    ) as d:
        latency = _offered(
            process_event,
            d.db,
            d.merchant_id,
            latency_events,
            latency_orders,
            p,
            d.worker,
            d.log,
            base=d.state,
        )
    problems = d.problems + latency.pop("problems")
    return {
        "drain": d.drain,
        "latency": latency,
        "problems": problems,
        "correct": not problems,
        "worker_log": str(d.log.name),
    }


class _LockWaits:
    """Samples, every ``every_s`` while running, what PostgreSQL's active sessions of this
    database wait on (``pg_stat_activity``): row locks show as ``Lock:transactionid`` /
    ``Lock:tuple``; a global lock would show as ``Lock:relation``/``Lock:advisory`` (or as
    everything queued behind one ``LWLock``)."""

    def __init__(self, db_url: str, every_s: float = 0.02) -> None:
        self.engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
        self.every_s = every_s
        self.samples: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _LockWaits:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.engine.dispose()

    def _run(self) -> None:
        query = sa.text(
            "SELECT coalesce(wait_event_type || ':' || wait_event, 'running') AS what, count(*) AS n "
            "FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' "
            "AND pid <> pg_backend_pid() GROUP BY 1"
        )
        with self.engine.connect() as conn:
            while not self._stop.wait(self.every_s):
                for row in conn.execute(query):
                    self.samples[row.what] += int(row.n)

    #: wait events that are row locks (a transaction waiting for another's row), and the kinds of
    #: wait a global lock would show as
    ROW_LOCKS = frozenset({"Lock:transactionid", "Lock:tuple"})

    def shares(self) -> dict[str, float]:
        """Of all samples of an active session: how many waited on a row lock, on any other
        heavyweight lock (relation, advisory…: what a global lock would be), on a lightweight
        lock, on I/O; the rest were running (or waiting on the client)."""
        total = sum(self.samples.values())
        if not total:
            return {}

        def share(pick: Callable[[str], bool]) -> float:
            return round(sum(n for what, n in self.samples.items() if pick(what)) / total, 4)

        return {
            "samples": float(total),
            "row_lock": share(lambda w: w in self.ROW_LOCKS),
            "other_lock": share(lambda w: w.startswith("Lock:") and w not in self.ROW_LOCKS),
            "lwlock": share(lambda w: w.startswith("LWLock:")),
            "io": share(lambda w: w.startswith("IO:")),
        }


def _fresh_database(pg_url: str, name: str) -> str:
    """A new, empty database in the same PostgreSQL cluster: each run counts only its own rows."""
    url = sa.engine.make_url(pg_url)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def scale_workers(
    process_event: Any, redis: common.Redis, pg_url: str, workdir: Path, p: dict[str, Any], counts: list[int]
) -> list[dict[str, Any]]:
    """Events/s for each number of worker processes (4 threads each) on one PostgreSQL, and what
    the database's sessions waited on meanwhile: how throughput grows with processes, and
    whether row locks (per order, per shipment) or something global serializes them."""
    rows = []
    for n in counts:
        flags = ["--processes", str(n), "--threads", "4"]
        db_url = _fresh_database(pg_url, f"bench_workers_{n}_{secrets.token_hex(2)}")
        with (
            _LockWaits(db_url) as waits,
            _drained(process_event, redis, db_url, workdir, p, f"pg×{n}", flags) as d,
        ):
            pass
        rows.append(
            {
                "processes": n,
                "threads_per_process": 4,
                "events_per_second": d.drain["events_per_second"],
                "correct": not d.problems,
                "problems": d.problems,
                "waits": waits.shares(),
            }
        )
    return rows


def _e2e(
    process_event: Any, redis: common.Redis, db_url: str, workdir: Path, p: dict[str, Any], label: str
) -> dict[str, Any]:
    """End to end with the Procfile's worker (2 processes × 4 threads): POST-equivalent enqueue
    → message in the outbox, at ``e2e_rate_per_s`` for ``e2e_seconds``, after a warm-up."""
    rate, seconds = p["e2e_rate_per_s"], p["e2e_seconds"]
    events = Events(salt=f"e{secrets.token_hex(2)}")
    warm = Events(salt=f"w{secrets.token_hex(2)}")
    orders = rate * seconds // len(PHASES)
    merchant_id = _prepare(db_url, [events.ref(i) for i in range(orders)] + [warm.ref(i) for i in range(8)])
    with _worker(redis, db_url, workdir, PROCFILE_FLAGS, f"worker-e2e-{label}.log") as (db, worker, log):
        before = sum(_state(db, merchant_id)["deliveries"].values())
        _send(process_event, warm, 8, datetime.now(UTC).isoformat())  # warm-up: both processes booted
        base = _wait(db, merchant_id, before + 8 * len(PHASES), p["drain_timeout_s"], worker, log)
        result = _offered(
            process_event,
            db,
            merchant_id,
            events,
            orders,
            {**p, "offered_rate_per_s": rate, "offered_seconds": seconds},
            worker,
            log,
            base=base,
        )
    result["worker"] = p["e2e_worker"]
    return result


def _offered(
    process_event: Any,
    db: Any,
    merchant_id: int,
    events: Events,
    orders: int,
    p: dict[str, Any],
    worker: Any,
    log: Path,
    base: dict[str, Any],
) -> dict[str, Any]:
    """Paced sends: blocks of `rate/3` orders per second (labels, then transits, then OFDs)."""
    rate = p["offered_rate_per_s"]
    block = max(1, rate // len(PHASES))
    schedule = [
        (phase, i)
        for start in range(0, orders, block)
        for phase, _ in PHASES
        for i in range(start, min(start + block, orders))
    ]
    sent_at: dict[str, datetime] = {}  # event id → enqueue time
    by_ref: dict[tuple[str, str], datetime] = {}  # (order ref, phase) → enqueue time
    t0 = time.monotonic()
    for k, (phase, i) in enumerate(schedule):
        delay = t0 + k / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        body = events.body(phase, i)
        event_id = common.event_id_for(body)
        now = datetime.now(UTC)
        process_event.send(MERCHANT, event_id, now.isoformat(), body)
        sent_at[event_id] = now
        by_ref[(events.ref(i), phase)] = now
    offered_s = time.monotonic() - t0
    total_events = sum(base["deliveries"].values()) + len(schedule)
    state = _wait(db, merchant_id, total_events, p["drain_timeout_s"], worker, log)
    deliveries_rows, note_rows = _timestamps(db, merchant_id, {events.ref(i) for i in range(orders)})
    commit_lat = [
        (r.processed_at - sent_at[r.event_id]).total_seconds()
        for r in deliveries_rows
        if r.event_id in sent_at
    ]
    phase_of = {"shipped": "label", "out_for_delivery": "ofd"}
    outbox_lat = [
        (r.sent_at - by_ref[(r.ref, phase_of[r.kind])]).total_seconds()
        for r in note_rows
        if r.sent_at and r.kind in phase_of
    ]
    problems = []
    if len(commit_lat) != len(schedule):
        problems.append(f"latency phase: {len(commit_lat)} of {len(schedule)} events committed")
    counts, wrong = verify_notifications(db, merchant_id, {events.ref(i) for i in range(orders)})
    problems.extend(f"latency phase: {w}" for w in wrong)
    result = {
        "offered_rate_per_s": rate,
        "events": len(schedule),
        "achieved_offer_rate_per_s": round(len(schedule) / offered_s, 1) if offered_s else 0.0,
        "state_after": state,
        "enqueue_to_commit_ms": common.summary_ms(commit_lat, "max"),
        "enqueue_to_outbox_ms": common.summary_ms(outbox_lat, "max"),
        # With 4 threads an order's three events (1/3 s apart) can be processed out of order; a
        # label applied after its out-for-delivery scan no longer means "shipped" (status never
        # regresses), so that email is rightly never planned. Counted here, not an error.
        "notifications_sent": len(outbox_lat),
        "notifications_if_in_order": orders * NOTIFICATIONS_PER_ORDER,
        "notifications": counts,
        "problems": problems,
    }
    say(
        f"latency at {rate}/s: commit p50 {result['enqueue_to_commit_ms']['p50']} ms "
        f"p99 {result['enqueue_to_commit_ms']['p99']} ms; outbox p50 {result['enqueue_to_outbox_ms']['p50']} ms "
        f"p99 {result['enqueue_to_outbox_ms']['p99']} ms"
    )
    return result


def _noop_floor(redis: common.Redis, workdir: Path, p: dict[str, Any]) -> dict[str, Any]:
    from dramatiq import Message

    from bench.noop_worker import make_broker

    k = p["noop_messages"]
    broker = make_broker(redis.url)
    broker.declare_queue(common.NOOP_QUEUE)
    client = redis.client()
    msgs_key = f"{common.NAMESPACE}:{common.NOOP_QUEUE}.msgs"
    client.delete(f"{common.NAMESPACE}:{common.NOOP_QUEUE}", msgs_key)
    for _ in range(k):
        broker.enqueue(
            Message(queue_name=common.NOOP_QUEUE, actor_name="noop", args=(), kwargs={}, options={})
        )
    if client.hlen(msgs_key) != k:
        raise BenchError(f"noop pre-fill: {client.hlen(msgs_key)} of {k} messages")
    env = common.child_env(BENCH_NOOP_BROKER_URL=redis.url)
    log = workdir / "worker-noop.log"
    worker = common.spawn(
        [str(common.VENV_BIN / "dramatiq"), *WORKER_FLAGS, "bench.noop_worker"], env=env, log=log
    )
    try:
        deadline = time.monotonic() + p["drain_timeout_s"]
        first_t, first_left = None, k
        left = k
        while left > 0:
            if worker.poll() is not None:
                raise BenchError(f"noop worker exited with {worker.returncode}:\n{common.log_tail(log)}")
            if time.monotonic() > deadline:
                raise BenchError(f"noop floor not drained after {p['drain_timeout_s']}s ({left} left)")
            time.sleep(0.002)
            left = client.hlen(msgs_key)
            if first_t is None and left < k:
                first_t, first_left = time.monotonic(), left
        last_t = time.monotonic()
    finally:
        common.stop_process(worker, timeout=30)
        broker.close()
        client.close()
    busy = last_t - (first_t or last_t)
    rate = first_left / busy if busy > 0 else 0.0
    say(f"floor: dramatiq no-op actor drained {k} messages at {rate:.0f}/s")
    return {
        "messages": k,
        "busy_seconds": round(busy, 3),
        "messages_per_second": round(rate, 1),
        "correct": True,
        "problems": [],
    }


def run(quick: bool = False, workers: list[int] | None = None) -> dict[str, Any]:
    """``workers``: also drain on PostgreSQL with each of these numbers of worker processes."""
    p = params(quick)
    results: dict[str, Any] = {}
    with common.temp_dir("ph-bench-pipeline-") as workdir, common.redis_server(workdir) as redis:
        process_event = _broker_for(redis.url)
        from bench.statements import measure

        results["sqlite"] = _drain(process_event, redis, common.sqlite_url(workdir), workdir, p, "sqlite")
        results["sqlite"]["statements"] = measure(common.sqlite_url(workdir, "statements.db"))
        if p["postgres"]:
            with common.temp_dir("ph-bench-pg-") as pgdir, common.postgres_server(pgdir) as pg_url:
                results["postgres"] = _drain(process_event, redis, pg_url, workdir, p, "postgres")
                results["postgres"]["statements"] = measure(pg_url)
                results["postgres"]["e2e"] = _e2e(process_event, redis, pg_url, workdir, p, "postgres")
                if workers:
                    results["postgres"]["workers"] = scale_workers(
                        process_event, redis, pg_url, workdir, p, workers
                    )
        else:
            results["sqlite"]["e2e"] = _e2e(
                process_event, redis, common.sqlite_url(workdir), workdir, p, "sqlite"
            )
        for r in results.values():
            r["problems"].extend(f"e2e: {w}" for w in (r.get("e2e") or {}).get("problems", ()))
            r["correct"] = not r["problems"]
        floor = _noop_floor(redis, workdir, p)
    table = []
    for name, r in results.items():
        d, lat = r["drain"], r["latency"]
        ratio = (
            d["events_per_second"] / floor["messages_per_second"]
            if floor["messages_per_second"]
            else float("nan")
        )
        r["ratio"] = round(ratio, 4)
        table.append(
            (
                f"pipeline {name}",
                f"{d['events_per_second']:.1f} ev/s",
                f"1 worker proc; commit p50 {lat['enqueue_to_commit_ms']['p50']:.0f} ms "
                f"p99 {lat['enqueue_to_commit_ms']['p99']:.0f} ms; outbox p50 "
                f"{lat['enqueue_to_outbox_ms']['p50']:.0f} ms p99 {lat['enqueue_to_outbox_ms']['p99']:.0f} ms "
                f"@{lat['offered_rate_per_s']}/s",
            )
        )
    for name, r in results.items():
        st = r["statements"]
        table.append(
            (
                f"pipeline statements/event {name}",
                f"{st['label']['processing_statements_per_event']:g} / {st['ofd']['processing_statements_per_event']:g}",
                f"process_event, label / out-for-delivery scan; + {st['ofd']['send_statements_per_notification']:g}"
                f" per email sent (outbox); all in: {st['label']['statements_per_event']:g} / "
                f"{st['ofd']['statements_per_event']:g}",
            )
        )
        if "e2e" in r:
            e = r["e2e"]
            table.append(
                (
                    f"pipeline e2e p99 {name}",
                    f"{e['enqueue_to_outbox_ms']['p99']:.0f} ms",
                    f"enqueue → outbox at {e['offered_rate_per_s']}/s for {p['e2e_seconds']} s, "
                    f"{p['e2e_worker'].split(' ', 2)[2]}; p50 {e['enqueue_to_outbox_ms']['p50']:.0f} ms, "
                    f"commit p99 {e['enqueue_to_commit_ms']['p99']:.0f} ms",
                )
            )
    for row in results.get("postgres", {}).get("workers", ()):
        results["postgres"]["problems"].extend(f"×{row['processes']}: {w}" for w in row["problems"])
        w = row["waits"]
        waits = (
            f"{w['samples']:.0f} active-session samples: row-lock waits {w['row_lock']:.1%}, other locks "
            f"{w['other_lock']:.1%}, LWLock {w['lwlock']:.1%}, I/O {w['io']:.1%}"
            if w
            else "no active session sampled"
        )
        table.append(
            (
                f"pipeline postgres {row['processes']} worker procs",
                f"{row['events_per_second']:.1f} ev/s",
                f"{row['processes']} × 4 threads on {common.machine_info()['nproc']} CPUs; sessions: {waits}",
            )
        )
        results["postgres"]["correct"] = not results["postgres"]["problems"]
    table.append(
        (
            "pipeline floor (dramatiq no-op)",
            f"{floor['messages_per_second']:.0f} msg/s",
            "same broker, same flags",
        )
    )
    for name, r in results.items():
        table.append(
            (f"pipeline ratio {name}", f"{r['ratio']:.3f}", "parcelhook events/s / no-op messages/s")
        )
    main = results["sqlite"]
    return {
        "params": p,
        "unit": "events per second per worker process (queue → committed state + rendered outbox message)",
        "result": results,
        "floor": floor,
        "ratio": main["ratio"],
        "ratios": {name: r["ratio"] for name, r in results.items()},
        "ratio_means": "parcelhook events/s / dramatiq no-op messages/s (each event also causes "
        f"{NOTIFICATIONS_PER_ORDER}/{len(PHASES)} send_notification messages)",
        "correct": all(r["correct"] for r in results.values()),
        "table": table,
    }
