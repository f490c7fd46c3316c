"""`scale`: per-event processing cost with a small and a large database (10k vs 1M shipments).

For each size, a fresh migrated SQLite file in a temp dir gets one merchant and ``size``
synthetic shipments, each with its registered order (customer email) and a realistic
in-transit state (the state ``domain.shipment.apply`` builds from the label + transit
fixtures), bulk-inserted in executemany batches. Then ``workers.processing.process_event``
runs in-process for M events — half labels for new shipments (new order rows too), half
out-for-delivery scans for distinct random existing shipments (order aggregate + a
notification intent) — each timed on its own. The floor is the small size: ratio =
large p50 / small p50 (1.0 = no slowdown with 100x more rows).
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import common
from bench.common import say

MERCHANT = "benchscale"
BATCH = 20_000
SALT = "z"


def params(quick: bool) -> dict[str, Any]:
    return {
        "small": 10_000,
        "large": 100_000 if quick else 1_000_000,
        "events": 400 if quick else 2000,
        "warmup_events": 100,
        "database": "SQLite file (WAL, synchronous=NORMAL) in a temp dir; PostgreSQL (a throwaway cluster, "
        "one database per size) when initdb exists",
        "postgres": common.postgres_available(),
        "rows_per_shipment": "1 shipment + 1 registered order (deliveries/scans/notifications tables start empty)",
    }


class Synthetic:
    """Row and body factories sharing the bench id scheme (bench.common.label_body/track_body)."""

    def __init__(self) -> None:
        from domain.payload import parse_event, parse_webhook
        from domain.shipment import ShipmentState, apply

        self.label = common.fixture("transaction_created.json")
        self.transit = common.fixture("track_updated_transit.json")
        self.ofd = common.fixture("track_updated_out_for_delivery.json")
        now = datetime.now(UTC)
        state = ShipmentState.empty()
        for body in (
            common.label_body(self.label, 0, SALT, self.ref(0)),
            common.track_body(self.transit, 0, SALT),
        ):
            event = parse_event(parse_webhook(common.dumps(body).encode()))
            if event is None:
                raise ValueError("a bench body that parcelhook does not act on")
            state, _, _ = apply(state, event, now)
        self.state = state
        self.template = state.to_dict()
        originals = [
            self.transit["data"]["tracking_status"]["object_id"],
            *(s["object_id"] for s in self.transit["data"]["tracking_history"]),
        ]
        self.scan_originals = {common.scan_id(o, 0, SALT): o for o in originals}
        self.txn0 = common.label_body(self.label, 0, SALT, None)["data"]["object_id"]

    @staticmethod
    def ref(i: int) -> str:
        return f"Order {SALT}{i}"

    def state_json(self, i: int) -> dict[str, Any]:
        d = dict(self.template)
        txn = common.label_body(self.label, i, SALT, None)["data"]["object_id"]
        number = common.tracking_number(i, SALT)
        d["tracking_number"] = number
        d["transaction_id"] = txn
        d["tracking_url_provider"] = (
            f"https://tools.usps.com/go/TrackConfirmAction_input?origTrackNum={number}"
        )
        d["metadata"] = self.ref(i)
        d["applied"] = sorted(
            common.scan_id(self.scan_originals[a], i, SALT)
            if a in self.scan_originals
            else a.replace(self.txn0, txn)
            for a in self.template["applied"]
        )
        return d


def _fill(db_url: str, size: int, syn: Synthetic) -> tuple[int, float]:
    from store.database import Database
    from store.schema import orders, shipments

    db = Database(db_url)
    t0 = time.monotonic()
    try:
        merchant = common.seed_merchant(
            db,
            MERCHANT,
            name="Bench Scale",
            profile={"email_from": "shipping@bench.example", "order_ref_pattern": r"Order (\S+)"},
        )
        now = datetime.now(UTC)
        st = syn.state
        for start in range(0, size, BATCH):
            stop = min(size, start + BATCH)
            order_rows = [
                {
                    "id": i + 1,
                    "merchant_id": merchant.id,
                    "ref": f"{SALT}{i}",
                    "status": "shipped",
                    "exception": None,
                    "customer": {
                        "name": f"Customer {i}",
                        "email": f"c{i}@bench.example",
                        "locale": "en",
                        "timezone": "America/New_York",
                    },
                    "notify_email": True,
                    "notify_sms": False,
                    "registered": True,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(start, stop)
            ]
            shipment_rows = []
            for i in range(start, stop):
                state = syn.state_json(i)
                shipment_rows.append(
                    {
                        "id": i + 1,
                        "merchant_id": merchant.id,
                        "order_id": i + 1,
                        "order_ref": f"{SALT}{i}",
                        "transaction_id": state["transaction_id"],
                        "carrier": st.carrier,
                        "tracking_number": state["tracking_number"],
                        "status": st.status.value if st.status else None,
                        "exception": None,
                        "last_scan_at": st.last_scan_at,
                        "state": state,
                        "version": 2,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            with db.write() as conn:
                conn.execute(orders.insert(), order_rows)
                conn.execute(shipments.insert(), shipment_rows)
        with db.write() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(shipments)).scalar_one()
            if not db.is_sqlite:  # explicit ids: move the sequences past them
                conn.exec_driver_sql(
                    "SELECT setval(pg_get_serial_sequence('orders', 'id'), (SELECT max(id) FROM orders))"
                )
                conn.exec_driver_sql(
                    "SELECT setval(pg_get_serial_sequence('shipments', 'id'), (SELECT max(id) FROM shipments))"
                )
        with db.engine.connect() as conn:
            if db.is_sqlite:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.exec_driver_sql("ANALYZE")
            else:
                conn.commit()
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
        return int(count), time.monotonic() - t0
    finally:
        db.dispose()


def _events(syn: Synthetic, size: int, n: int, rng: random.Random) -> list[tuple[str, str]]:
    """n/2 labels for new shipments (index >= size) and n/2 OFD scans for distinct existing ones."""
    half = n // 2
    fresh = [
        common.dumps(common.label_body(syn.label, size + k, SALT, f"Order new{size + k}"))
        for k in range(half)
    ]
    existing = [common.dumps(common.track_body(syn.ofd, i, SALT)) for i in rng.sample(range(size), n - half)]
    mixed = [b for pair in zip(fresh, existing, strict=True) for b in pair]
    return [(common.event_id_for(b), b) for b in mixed]


def _database(workdir: Path, size: int, pg_url: str | None) -> str:
    """A fresh empty database for ``size``: a SQLite file, or a new PostgreSQL database."""
    if pg_url is None:
        for f in workdir.glob("scale-*.db*"):
            f.unlink()
        return common.sqlite_url(workdir, f"scale-{size}.db")
    engine = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS scale_{size}")
            conn.exec_driver_sql(f"CREATE DATABASE scale_{size}")
    finally:
        engine.dispose()
    return pg_url.rsplit("/", 1)[0] + f"/scale_{size}"


def _bytes(url: str, workdir: Path, size: int) -> int:
    if url.startswith("sqlite"):
        return sum(f.stat().st_size for f in workdir.glob(f"scale-{size}.db*"))
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one())
    finally:
        engine.dispose()


def _measure(size: int, p: dict[str, Any], syn: Synthetic, workdir: Path, url: str) -> dict[str, Any]:
    from store.database import Database
    from store.schema import deliveries, notifications, shipments
    from workers.processing import process_event

    common.migrate(url)
    count, fill_s = _fill(url, size, syn)
    db_bytes = _bytes(url, workdir, size)
    say(
        f"{size:,} shipments: filled {count:,} shipments + orders in {fill_s:.1f} s ({db_bytes / 1e6:.0f} MB)"
    )
    rng = random.Random(size)
    total = p["warmup_events"] + p["events"]
    events = _events(syn, size, total, rng)
    db = Database(url)
    timings: dict[str, list[float]] = {"new_shipment": [], "update": []}
    outcomes: dict[str, int] = {}
    try:
        for k, (event_id, body) in enumerate(events):
            received = datetime.now(UTC)
            t0 = time.perf_counter()
            outcome = process_event(db, MERCHANT, event_id, received, body, received)
            elapsed = time.perf_counter() - t0
            outcomes[outcome.status] = outcomes.get(outcome.status, 0) + 1
            if k >= p["warmup_events"]:
                timings["new_shipment" if k % 2 == 0 else "update"].append(elapsed)
        with db.read() as conn:
            shipments_after = conn.execute(sa.select(sa.func.count()).select_from(shipments)).scalar_one()
            processed = conn.execute(
                sa.select(sa.func.count()).select_from(deliveries).where(deliveries.c.outcome == "processed")
            ).scalar_one()
            # one OFD email per update; the SMS intent of a customer without a phone is recorded
            # too, as `suppressed` (no contact), and is not counted here
            intents = conn.execute(
                sa.select(sa.func.count())
                .select_from(notifications)
                .where(notifications.c.channel == "email")
            ).scalar_one()
    finally:
        db.dispose()
    every = timings["new_shipment"] + timings["update"]
    problems = []
    if outcomes != {"processed": total} or processed != total:
        problems.append(f"outcomes {outcomes}, {processed} processed deliveries (expected {total})")
    if shipments_after != size + total // 2:
        problems.append(f"{shipments_after} shipments after, expected {size + total // 2}")
    if intents != total - total // 2:
        problems.append(
            f"{intents} notification intents, expected {total - total // 2} (one OFD email per update)"
        )
    result: dict[str, Any] = {
        "shipments": count,
        "fill_seconds": round(fill_s, 1),
        "database_bytes": db_bytes,
        "events_timed": len(every),
        "per_event_ms": common.summary_ms(every, "mean"),
        "new_shipment_ms": common.summary_ms(timings["new_shipment"], "mean"),
        "update_ms": common.summary_ms(timings["update"], "mean"),
        "events_per_second_serial": round(len(every) / sum(every), 1) if every else 0.0,
        "problems": problems,
        "correct": not problems,
    }
    say(
        f"{size:,} shipments: per event p50 {result['per_event_ms']['p50']} ms, p99 {result['per_event_ms']['p99']} ms "
        f"(new {result['new_shipment_ms']['p50']} / update {result['update_ms']['p50']} ms p50)"
    )
    return result


def run(quick: bool = False) -> dict[str, Any]:
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)
    p = params(quick)
    syn = Synthetic()
    label_large = f"{p['large'] // 1000}k" if p["large"] < 1_000_000 else f"{p['large'] // 1_000_000}M"
    halves: dict[str, dict[str, Any]] = {}
    with common.temp_dir("ph-bench-scale-") as workdir:
        halves["sqlite"] = _half(p, syn, workdir, None)
        if p["postgres"]:
            with common.temp_dir("ph-bench-scale-pg-") as pgdir, common.postgres_server(pgdir) as pg_url:
                say("PostgreSQL half")
                halves["postgres"] = _half(p, syn, workdir, pg_url)
    table = []
    for name, h in halves.items():
        small, large = h["floor"], h["result"]
        table += [
            (
                f"scale {name} {label_large} shipments",
                f"{large['per_event_ms']['p50']:.2f} ms",
                f"p99 {large['per_event_ms']['p99']:.2f} ms per event (fill {large['fill_seconds']:.0f} s)",
            ),
            (
                f"scale {name} 10k shipments (floor)",
                f"{small['per_event_ms']['p50']:.2f} ms",
                f"p99 {small['per_event_ms']['p99']:.2f} ms per event",
            ),
            (
                f"scale ratio {name} {label_large}/10k",
                f"{h['ratio']:.2f}",
                f"p50 ratio (p99 ratio {h['ratio_p99']:.2f})",
            ),
        ]
    main = halves["sqlite"]
    return {
        "params": p,
        "unit": "milliseconds per event, workers.processing.process_event in-process, one at a time",
        "result": main["result"],
        "floor": main["floor"],
        "ratio": main["ratio"],
        "ratio_p99": main["ratio_p99"],
        "ratios": {name: h["ratio"] for name, h in halves.items()},
        "databases": halves,
        "ratio_means": f"p50 per-event time at {p['large']:,} shipments / at {p['small']:,} (1.0 = size-independent)",
        "correct": all(h["floor"]["correct"] and h["result"]["correct"] for h in halves.values()),
        "table": table,
    }


def _half(p: dict[str, Any], syn: Synthetic, workdir: Path, pg_url: str | None) -> dict[str, Any]:
    small = _measure(p["small"], p, syn, workdir, _database(workdir, p["small"], pg_url))
    large = _measure(p["large"], p, syn, workdir, _database(workdir, p["large"], pg_url))
    return {
        "floor": small,
        "result": large,
        "ratio": round(large["per_event_ms"]["p50"] / small["per_event_ms"]["p50"], 3),
        "ratio_p99": round(large["per_event_ms"]["p99"] / small["per_event_ms"]["p99"], 3),
    }
