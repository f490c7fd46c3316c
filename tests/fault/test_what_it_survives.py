"""What parcelhook survives: the Procfile's processes under real faults, with realistic Shippo traffic.

Each scenario streams labels and 3–5 scans per order (some duplicated, some out of order) from a
sender that retries 503s like Shippo, breaks something mid-stream, and then settles the books
(tests/support/fault_ledger.py): accepted = processed, expected customer messages = sent, no
duplicates, and the time the system took to catch up after the fault ended. Each row is appended
to tests/artifacts/fault-results.jsonl; ``make proof`` runs the full-size version and prints the
README table.

Sizes: ``PARCELHOOK_FAULT_ORDERS`` orders per scenario (default 50: a few hundred webhooks).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.fault_ledger import assert_kept_its_word, failure_alerts, settle
from tests.support.fault_rig import Rig, wait
from tests.support.shippo_traffic import Parcel, ShippoSender, traffic

pytestmark = [pytest.mark.fault, pytest.mark.redis, pytest.mark.postgres]

ORDERS = int(os.environ.get("PARCELHOOK_FAULT_ORDERS", "50"))
RATE = float(os.environ.get("PARCELHOOK_FAULT_RATE", "60"))  # webhooks per second offered
MERCHANT = "fault"


@pytest.fixture()
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(database: str = "postgres") -> Rig:
        workdir = tmp_path / f"rig{len(rigs)}"
        workdir.mkdir()
        rig = Rig(workdir, database=database)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.destroy()


def open_shop(rig: Rig, parcels: list[Parcel]) -> str:
    """The merchant and its registered orders; returns the webhook URL to paste into Shippo."""
    merchant = rig.admin_call(
        "PUT",
        f"/api/merchants/{MERCHANT}",
        {
            "name": "Fault Goods",
            "email_from": "shipping@fault.example",
            "sms_from": "+14155550100",
            "alert_email": "alerts@fault.example",
        },
    )
    for p in parcels:
        customer = {"name": f"Customer {p.ref}", "email": p.email, **({"phone": p.phone} if p.phone else {})}
        rig.admin_call(
            "PUT",
            f"/api/merchants/{MERCHANT}/orders/{p.ref}",
            {"customer": customer, "notify": {"email": True, "sms": p.phone is not None}},
        )
    return str(merchant["webhook_url"])


def stream(
    rig: Rig, parcels: list[Parcel], bodies: list[bytes], url: str, **kwargs: object
) -> tuple[ShippoSender, threading.Thread]:
    sender = ShippoSender(url, rate_per_s=RATE)
    return sender, sender.start_background(bodies, **kwargs)


def at_fraction(sender: ShippoSender, total: int, fraction: float, timeout: float = 120) -> None:
    wait(
        lambda: sender.report.sent >= total * fraction,
        timeout,
        f"{fraction:.0%} of the stream sent",
        every=0.05,
    )


def running(rig: Rig, seed: int = 1) -> tuple[list[Parcel], list[bytes], str]:
    parcels, bodies = traffic(ORDERS, seed=seed)
    rig.start_all()
    rig.supervise("worker")
    return parcels, bodies, open_shop(rig, parcels)


# --------------------------------------------------------------------------- 1. kill -9 a worker, three times
# (twice one worker process, once the whole group as when a host dies; a supervisor restarts it)


@pytest.mark.parametrize("database", ["postgres", "sqlite"])
def test_a_worker_killed_three_times_mid_stream(make_rig: Callable[..., Rig], database: str) -> None:
    rig = make_rig(database)
    parcels, bodies, url = running(rig)
    sender, thread = stream(rig, parcels, bodies, url)
    for fraction, whole_group in ((0.25, False), (0.5, False), (0.75, True)):  # recovery: from the host loss
        at_fraction(sender, len(bodies), fraction)
        victim = wait(lambda: rig.live("worker"), 30, "a running worker group")[0]
        if whole_group:  # the host is gone: no graceful requeue by a surviving master
            rig.kill9(victim)
        else:  # one worker process (OOM killer); dramatiq's master then stops its siblings
            rig.kill9_child(victim)
        wait(
            lambda gone=victim: gone.popen.poll() is not None and rig.live("worker"),
            60,
            "the dramatiq master to exit and the supervisor to start a new worker group",
        )
    fault_over = time.monotonic()
    thread.join(300)
    ledger = settle(rig, "worker process kill -9 ×3", parcels, sender.report, fault_over_at=fault_over)
    assert rig.restarts.get("worker", 0) >= 3
    # a kill inside a provider call leaves that message's outcome unknown (at most once): at most
    # one per worker thread killed (4 + 4 + 2 × 4)
    assert_kept_its_word(ledger, rig, sender.report, max_uncertain=16)


# --------------------------------------------------------------------------- 2. Redis kill -9, workers left running


def test_redis_killed_and_restarted_from_its_aof_under_live_workers(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    parcels, bodies, url = running(rig)
    rig.twilio.fail_next(500, code=20500, times=15)  # SMS retries wait in the workers' delay queues
    sender, thread = stream(rig, parcels, bodies, url)
    at_fraction(sender, len(bodies), 0.5)
    workers_before = {p.popen.pid for p in rig.live("worker")}
    rig.kill9_redis()
    time.sleep(3)
    rig.restart_redis()
    fault_over = time.monotonic()
    thread.join(300)
    ledger = settle(
        rig,
        "Redis kill -9, AOF restart, workers kept running",
        parcels,
        sender.report,
        fault_over_at=fault_over,
        timeout_s=240,
    )
    assert {p.popen.pid for p in rig.live("worker")} == workers_before, "recovered without restarting workers"
    assert_kept_its_word(ledger, rig, sender.report)


# --------------------------------------------------------------------------- 3. PostgreSQL down for 20 s


def test_postgresql_stopped_for_twenty_seconds(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    parcels, bodies, url = running(rig)
    sender, thread = stream(rig, parcels, bodies, url)
    at_fraction(sender, len(bodies), 0.4)
    assert rig.pg is not None
    rig.pg.stop()
    time.sleep(20)
    rig.pg.start()
    fault_over = time.monotonic()
    thread.join(300)
    ledger = settle(
        rig, "PostgreSQL stopped 20 s", parcels, sender.report, fault_over_at=fault_over, timeout_s=240
    )
    assert_kept_its_word(ledger, rig, sender.report)
    assert failure_alerts(rig) == [], "a message the provider took was reported to the merchant as failed"


# --------------------------------------------------------------------------- 4. the channels misbehave


def test_smtp_down_twilio_errors_an_invalid_and_a_hanging_number(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    parcels, bodies, url = running(rig)
    with_phone = [p for p in parcels if p.phone]
    invalid, hanging = with_phone[0], with_phone[1]
    assert invalid.phone and hanging.phone
    rig.twilio.invalid.add(invalid.phone)
    rig.twilio.hanging.add(hanging.phone)
    rig.smtp.stop()  # connections refused
    rig.twilio.fail_next(500, code=20500, times=8)
    rig.twilio.fail_next(429, code=20429, times=8, retry_after="1")
    sender, thread = stream(rig, parcels, bodies, url)
    thread.join(300)
    time.sleep(5)
    rig.smtp.restart()
    fault_over = time.monotonic()
    ledger = settle(
        rig,
        "SMTP down; Twilio 500, 429, one invalid and one hanging number",
        parcels,
        sender.report,
        fault_over_at=fault_over,
        timeout_s=300,
        unreachable=frozenset({(invalid.ref, "sms"), (hanging.ref, "sms")}),
    )
    assert_kept_its_word(ledger, rig, sender.report)
    assert failure_alerts(rig), "the invalid number is reported to the merchant"
    hung = [m for m in rig.twilio.messages if m.get("to") == hanging.phone]
    assert hung == [], "a message whose outcome is unknown is never sent a second time"


# --------------------------------------------------------------------------- 5. restarts while retries wait


def test_delayed_retries_survive_a_scheduler_restart_and_a_graceful_worker_restart(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    parcels, bodies, url = running(rig)
    rig.twilio.fail_next(500, code=20500, times=20)
    sender, thread = stream(rig, parcels, bodies, url)
    at_fraction(sender, len(bodies), 0.6)
    rig.terminate(rig.live("scheduler")[0])
    rig.start("scheduler")
    rig.terminate(rig.live("worker")[0])  # a deploy: SIGTERM, in-flight work finishes or is requeued
    rig.start("worker")
    fault_over = time.monotonic()
    thread.join(300)
    ledger = settle(
        rig,
        "scheduler restart + graceful worker restart with retries pending",
        parcels,
        sender.report,
        fault_over_at=fault_over,
        timeout_s=240,
    )
    assert_kept_its_word(ledger, rig, sender.report)


# --------------------------------------------------------------------------- 6. duplicate storm


def test_a_duplicate_storm(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    parcels, bodies, url = running(rig)
    sender, thread = stream(rig, parcels, bodies, url, concurrent_copies=3)
    thread.join(300)
    ledger = settle(
        rig, "duplicate storm (every webhook ×3, concurrently)", parcels, sender.report, fault_over_at=None
    )
    assert sender.report.answers["duplicate"] >= 2 * len(set(bodies)) * 0.9
    assert_kept_its_word(ledger, rig, sender.report)


# --------------------------------------------------------------------------- 7. the scheduler killed while active


def test_a_second_scheduler_takes_over_when_the_active_one_is_killed(make_rig: Callable[..., Rig]) -> None:
    import redis

    rig = make_rig()
    parcels, bodies, url = running(rig)
    second = rig.start("scheduler")
    client = redis.Redis.from_url(rig.redis.url)
    alerts_every = 30

    def claimed_slot() -> int:
        return max(
            (int(k.rsplit(b":", 1)[1]) for k in client.scan_iter(b"parcelhook:scheduler:alerts:*")),
            default=-1,
        )

    wait(lambda: claimed_slot() >= 0, 45, "a scheduler claimed a tick")
    sender, thread = stream(rig, parcels, bodies, url)
    first = rig.live("scheduler")[0]
    assert first is not second
    rig.kill9(first)
    killed_at_slot = int(time.time() // alerts_every)
    fault_over = time.monotonic()
    wait(
        lambda: claimed_slot() > killed_at_slot,
        alerts_every + 15,
        "the surviving scheduler claimed the next tick",
    )
    thread.join(300)
    ledger = settle(
        rig, "active scheduler kill -9, a second takes over", parcels, sender.report, fault_over_at=fault_over
    )
    client.close()
    assert second.popen.poll() is None
    assert_kept_its_word(ledger, rig, sender.report)
