"""Reconciliation with Shippo (scheduler job ``shippo``): a webhook Shippo never delivered (or we
never got) is recovered by asking Shippo.

Every run takes the non-terminal shipments that have heard nothing for
``PARCELHOOK_RECONCILE_AFTER_H`` hours and were not looked up in that time, oldest first, and
looks each up (``workers/tracking_refresh.py``: the same processing as a webhook, so a status
already heard has no second effect, and a lost ``delivered`` tells the customer once). Limits:

- at most ``PARCELHOOK_SHIPPO_RATE_PER_MIN`` Shippo requests per merchant per minute: the
  merchant's ``CallBudget`` (``workers/shippo_account.py``), shared in Redis with every other
  process and path (manual lookups, webhook registration, retries); a merchant whose minute is
  used up is skipped until the next run;
- one run at a time (a Redis lock with a timeout), on top of the scheduler's per-tick claim,
  which already makes one of any number of schedulers enqueue each tick;
- a run stops after ``RUN_BUDGET`` so it ends well inside ``run_maintenance``'s time limit;
- merchants whose token Shippo refused are skipped (``workers/shippo_account.py``).

The worker decrypts the merchants' Shippo tokens for this job, so it needs
``PARCELHOOK_ENCRYPTION_KEYS``; without it the job logs a warning and does nothing.
Outcomes are counted for ``/metrics`` (``parcelhook_shippo_reconcile_total{result}``):
``polled`` (Shippo answered and the Track was processed), ``changed`` (of those, the status moved
or an exception opened or cleared), ``failed`` (Shippo failed, or its answer could not be used).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import redis

from domain.payload import PayloadError
from domain.shipment import TERMINAL
from shippo_api.errors import ShippoError, ShippoUnauthorized
from store import merchants as merchant_store
from store import shippo_polls
from store.database import utcnow
from store.errors import StoreError
from store.merchants import Merchant
from workers.shippo_account import CallBudget, ShippoNotReady
from workers.tracking_refresh import refresh

if TYPE_CHECKING:
    from workers.runtime import Runtime

log = logging.getLogger("parcelhook.shippo")

BATCH = 1000  # shipments considered per run
RUN_BUDGET = timedelta(minutes=4)  # run_maintenance's time limit is 5 min
RESULTS = ("polled", "changed", "failed")
COUNTS = "c:shippo_reconcile"  # under the telemetry prefix
RUNNING_KEY = "parcelhook:shippo:reconcile:running"


@dataclass(frozen=True)
class Reconciled:
    """What a run found to do next (the scheduler's ``Followups``)."""

    notification_ids: tuple[int, ...] = ()
    platform_events: bool = False


def reconcile(rt: Runtime, *, now: datetime | None = None) -> Reconciled:
    """The job. ``now`` is the clock (tests inject one)."""
    settings = rt.settings
    now = now or utcnow()
    if not settings.encryption_keys:
        if _due(rt, now, limit=1):  # only worth a warning when there is something to reconcile
            log.warning(
                "reconciliation with Shippo skipped: PARCELHOOK_ENCRYPTION_KEYS is not set on this worker"
            )
        return Reconciled()
    client = rt.telemetry.client
    if not client.set(RUNNING_KEY, "1", nx=True, ex=int(RUN_BUDGET.total_seconds()) + 60):
        return Reconciled()  # another run is still going
    try:
        return _run(rt, client, now)
    finally:
        client.delete(RUNNING_KEY)


def _run(rt: Runtime, client: redis.Redis, now: datetime) -> Reconciled:
    settings, db = rt.settings, rt.database
    due = _due(rt, now, limit=BATCH)
    budget = CallBudget(client, settings.shippo_rate_per_min)
    merchants: dict[int, Merchant | None] = {}
    skipped: set[int] = set()
    ids: list[int] = []
    counts = dict.fromkeys(RESULTS, 0)
    platform_events = 0
    started = time.monotonic()
    for shipment in due:
        if time.monotonic() - started > RUN_BUDGET.total_seconds():
            break
        if shipment.merchant_id in skipped:
            continue
        merchant = merchants.get(shipment.merchant_id)
        if shipment.merchant_id not in merchants:
            with db.read() as conn:
                merchant = merchant_store.get_by_id(conn, shipment.merchant_id, settings.vault)
            merchants[shipment.merchant_id] = merchant
        if merchant is None or merchant.shippo_paused:
            skipped.add(shipment.merchant_id)
            continue
        try:
            result = refresh(
                db,
                settings,
                merchant,
                shipment.carrier,
                shipment.tracking_number,
                now=now,
                on_alert=ids.append,
                budget=budget,
            )
        except ShippoUnauthorized:
            counts["failed"] += 1
            skipped.add(merchant.id)  # paused now; the alert is in ids
            continue
        except ShippoNotReady:  # paused, or this minute's requests are used up (ShippoRateLimited)
            skipped.add(merchant.id)
            continue
        except (ShippoError, PayloadError, StoreError) as exc:
            counts["failed"] += 1
            log.warning(
                "reconciliation: shipment %d of %s not refreshed: %s", shipment.id, merchant.slug, _why(exc)
            )
        else:
            counts["polled"] += 1
            counts["changed"] += int(result.changed)
            ids.extend(result.notification_ids)
            platform_events += result.platform_events
        with db.write() as conn:
            shippo_polls.mark_polled(conn, shipment.id, now)
    _count(client, rt.telemetry.prefix, counts)
    return Reconciled(tuple(ids), platform_events=platform_events > 0)


def _due(rt: Runtime, now: datetime, *, limit: int) -> list[shippo_polls.QuietShipment]:
    with rt.database.read() as conn:
        return shippo_polls.quiet(
            conn,
            heard_before=now - timedelta(hours=rt.settings.reconcile_after_h),
            terminal=[s.value for s in TERMINAL],
            limit=limit,
        )


def _why(exc: Exception) -> str:
    return exc.described if isinstance(exc, ShippoError) else f"{type(exc).__name__}: {exc}"


def _count(client: redis.Redis, prefix: str, counts: Mapping[str, int]) -> None:
    try:
        pipe = client.pipeline()
        for result, n in counts.items():
            pipe.hincrby(f"{prefix}:{COUNTS}", result, n)  # 0 too: every series exists
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("reconciliation counts not recorded: %s", exc)


def read_counts(client: redis.Redis, prefix: str) -> dict[str, int]:
    """``{result: total}`` for ``/metrics``, every result present."""
    raw = client.hgetall(f"{prefix}:{COUNTS}")
    stored = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
    return {result: stored.get(result, 0) for result in RESULTS}
