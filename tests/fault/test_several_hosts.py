"""Several hosts, shown: two `web`, two `worker` and two `scheduler` groups, each its own process
group on its own loopback address (tests/support/hosts.py), on one PostgreSQL and one broker
(Redis, and RabbitMQ through tests/support/rabbitmq.py).

A stream of at least 2,000 realistic Shippo webhooks (some sent twice, some out of order) is
spread round robin over the `web` hosts, as a load balancer would; Twilio answers the first SMS
attempts with 500s so that retries wait in the workers' hands. Mid-stream one whole worker host
loses power (SIGKILL to its process group, never restarted), and so does the scheduler that
holds the current tick. Then the books are settled (tests/support/fault_ledger.py):

* every accepted webhook has exactly one effect: one ``deliveries`` row, every scan recorded once;
* every expected customer message reached the SMTP / Twilio-compatible server exactly once, and
  nothing reached them that is not a recorded notification (no duplicates, across hosts);
* what the dead worker host had fetched and not acked — running, prefetched or a delayed retry —
  came back to its queue and was finished by the surviving host (on Redis message by message,
  from the dead consumer's ack sets; on RabbitMQ, from its channels' unacked count);
* the two schedulers claimed every tick once between them, and when the active one died the
  survivor claimed the next tick within the tick key's expiry.

Sizes: ``PARCELHOOK_HOSTS_WEBHOOKS`` webhooks (default and floor 2,000), offered at
``PARCELHOOK_HOSTS_RATE`` per second (default 120) over all `web` hosts.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import pytest
import redis
import sqlalchemy as sa

from notifiers.smtp import message_id_for
from store.schema import deliveries, notifications, shipment_scans, shipments
from tests.fault.test_what_it_survives import open_shop
from tests.support.fault_ledger import UNRESOLVED, assert_kept_its_word, settle
from tests.support.fault_rig import Rig, wait
from tests.support.hosts import ConnectionWatch, Fleet, Host, SpreadSender, established_to
from tests.support.rabbitmq import RabbitNode, rabbitmq_service  # noqa: F401 - fixture
from tests.support.shippo_traffic import Parcel, traffic
from workers.clock import CADENCE_S

pytestmark = [pytest.mark.fault, pytest.mark.redis, pytest.mark.postgres]

WEBHOOKS = max(2000, int(os.environ.get("PARCELHOOK_HOSTS_WEBHOOKS", "2000")))
RATE = float(os.environ.get("PARCELHOOK_HOSTS_RATE", "120"))
NAMESPACE = "parcelhook"  # Settings.broker_namespace
WORKER_THREADS = 4  # per worker host (1 process): at most this many sends die inside a provider call
#: Each scheduler tick is a Redis key set with NX that expires after two cadences (workers/clock.py).
TICK_KEY_EXPIRY_S = 2 * CADENCE_S["alerts"]
BROKERS = ["redis", "rabbitmq"]


@dataclass(frozen=True)
class System:
    """The rig, and the broker its processes use (Redis, or a RabbitMQ virtual host of its own)."""

    rig: Rig
    broker: str
    rabbit: RabbitNode | None = None
    vhost: str = "/"


@pytest.fixture(params=BROKERS)
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[System]:
    rig = Rig(tmp_path, worker_processes=1, worker_threads=WORKER_THREADS)
    with ExitStack() as stack:
        if request.param == "rabbitmq":
            node: RabbitNode = request.getfixturevalue("rabbitmq_service")
            vhost = stack.enter_context(node.vhost())
            rig.env.update(
                PARCELHOOK_BROKER_URL=node.amqp_url(vhost),
                PARCELHOOK_REDIS_URL=rig.redis.url,  # state: dedupe keys, telemetry, scheduler ticks
                PARCELHOOK_RABBITMQ_MANAGEMENT_URL=node.management_url,
            )
            stack.callback(rig.destroy)  # before the virtual host goes
            yield System(rig, "rabbitmq", node, vhost)
        else:
            stack.callback(rig.destroy)
            yield System(rig, "redis")


def stream_of_at_least(webhooks: int) -> tuple[list[Parcel], list[bytes]]:
    orders = webhooks // 7
    while True:
        parcels, bodies = traffic(orders, seed=13, prefix="H")
        if len(bodies) >= webhooks:
            return parcels, bodies
        orders += 10


# --------------------------------------------------------------------------- what a dead worker held


@dataclass(frozen=True)
class Orphan:
    queue: str
    actor: str
    args: tuple[Any, ...]


def held_by_dead_consumers(client: redis.Redis, dead_since_ms: int) -> dict[str, list[Orphan]]:
    """The ack sets (``<ns>:__acks__.<broker id>.<queue>``) of broker ids that have not beaten since
    ``dead_since_ms``, with the messages in them: what those consumers fetched and never acked."""
    scored = cast(
        list[tuple[bytes, float]], client.zrange(f"{NAMESPACE}:__heartbeats__", 0, -1, withscores=True)
    )
    beats = {member.decode(): score for member, score in scored}
    held: dict[str, list[Orphan]] = {}
    for key in cast(Iterator[bytes], client.scan_iter(f"{NAMESPACE}:__acks__.*".encode())):
        broker_id, queue = key.decode().split("__acks__.", 1)[1].split(".", 1)
        if beats.get(broker_id, 0) >= dead_since_ms:
            continue
        for message_id in cast(set[bytes], client.smembers(key)):
            raw = cast(bytes | None, client.hget(f"{NAMESPACE}:{queue}.msgs", message_id))
            if raw is not None:
                message = json.loads(raw)
                held.setdefault(key.decode(), []).append(
                    Orphan(queue, message["actor_name"], tuple(message["args"]))
                )
    return held


def unacked_by_group(node: RabbitNode, vhost: str) -> Counter[int]:
    """RabbitMQ: messages delivered and not acked, by the process group of the consumer's
    connection (the management API's channel figures, refreshed every second)."""
    ports = established_to(node.amqp_port)
    group_of: dict[int, int] = {}
    for local_port, pid in re.findall(r"\S+:(\d+)\s+\S+\s+users:\(\(\"[^\"]*\",pid=(\d+)", ports):
        try:
            group_of[int(local_port)] = os.getpgid(int(pid))
        except ProcessLookupError:
            pass
    held: Counter[int] = Counter()
    for channel in node.api("GET", f"/api/vhosts/{quote(vhost, safe='')}/channels").json():
        group = group_of.get(int(channel.get("connection_details", {}).get("peer_port") or 0))
        if group is not None:
            held[group] += int(channel.get("messages_unacknowledged") or 0)
    return held


def consumers_holding(client: redis.Redis) -> int:
    """How many consumers hold messages (fetched, prefetched or delayed, not acked). Counted by
    broker id, one per worker host (each runs one process), not by ack set: two queues of ONE
    host must not pass for both hosts."""
    holders = set()
    for key in cast(Iterator[bytes], client.scan_iter(f"{NAMESPACE}:__acks__.*".encode())):
        if client.scard(key):
            holders.add(key.decode().split("__acks__.", 1)[1].split(".", 1)[0])
    return len(holders)


# --------------------------------------------------------------------------- scheduler ticks


@dataclass
class TickWatch:
    """Every scheduler tick key seen while the test runs (they expire after two cadences)."""

    client: redis.Redis
    seen: set[tuple[str, int]] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def poll(self) -> None:
        for key in cast(Iterator[bytes], self.client.scan_iter(b"parcelhook:scheduler:*")):
            _, _, job, slot = key.decode().split(":")
            self.seen.add((job, int(slot)))

    def run(self) -> None:
        while not self.stop.wait(2.0):
            try:
                self.poll()
            except redis.RedisError:
                pass

    def last_slot(self, job: str) -> int:
        self.poll()
        return max((slot for j, slot in self.seen if j == job), default=-1)


CLAIM = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ scheduler INFO enqueued (.+)")


def claims(host: Host) -> list[tuple[datetime, str]]:
    """(when, job) for every tick this scheduler claimed, from its log."""
    out = []
    for line in host.log().splitlines():
        match = CLAIM.search(line)
        if match:
            when = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S")
            out += [(when, job.strip()) for job in match[2].split(",")]
    return out


# --------------------------------------------------------------------------- books beyond the ledger


def scans_in(bodies: list[bytes]) -> set[tuple[str, str]]:
    """(tracking number, scan id) of every scan the stream carried."""
    scans = set()
    for body in bodies:
        event = json.loads(body)
        if event["event"] == "track_updated":
            data = event["data"]
            scans |= {(data["tracking_number"], s["object_id"]) for s in data["tracking_history"]}
    return scans


def one_effect_each(rig: Rig, accepted: set[str], bodies: list[bytes]) -> None:
    engine = sa.create_engine(rig.database_url)
    try:
        with engine.connect() as conn:
            events = Counter(r[0] for r in conn.execute(sa.select(deliveries.c.event_id)))
            recorded = list(
                conn.execute(
                    sa.select(shipments.c.tracking_number, shipment_scans.c.scan_id).select_from(
                        shipment_scans.join(shipments, shipments.c.id == shipment_scans.c.shipment_id)
                    )
                )
            )
    finally:
        engine.dispose()
    assert set(events) == accepted, "a delivery row for each accepted webhook, and for nothing else"
    assert max(events.values()) == 1
    assert Counter(map(tuple, recorded)) == Counter(scans_in(bodies)), "every scan recorded exactly once"


def each_customer_message_once(rig: Rig, parcels: list[Parcel]) -> None:
    """Every customer message at the providers is one recorded notification, and each recorded send
    is there once: across hosts, nothing went out twice under two names either."""
    engine = sa.create_engine(rig.database_url)
    try:
        with engine.connect() as conn:
            rows = list(
                conn.execute(
                    sa.select(
                        notifications.c.channel,
                        notifications.c.status,
                        notifications.c.error_code,
                        notifications.c.provider_id,
                        notifications.c.idempotency_key,
                    ).where(notifications.c.audience == "customer")
                )
            )
    finally:
        engine.dispose()
    emails_to = {p.email for p in parcels}
    phones_to = {p.phone for p in parcels if p.phone}
    # what reached the customers (merchant alerts, e.g. about an unknown outcome, go elsewhere)
    at_smtp = Counter(
        str(m.message["Message-ID"])
        for m in rig.smtp.messages
        if parseaddr(str(m.message["To"]))[1] in emails_to
    )
    at_twilio = Counter(m.get("sid") for m in rig.twilio.messages if m.get("to") in phones_to)
    sent = [r for r in rows if r.status in ("sent", "delivered")]
    unknown = [r for r in rows if r.error_code == "outcome_unknown"]
    emails = {message_id_for(r.idempotency_key) for r in sent if r.channel == "email"}
    texts = {r.provider_id for r in sent if r.channel == "sms"}
    assert all(at_smtp[i] == 1 for i in emails), "a recorded email is at the SMTP server exactly once"
    assert all(at_twilio[i] == 1 for i in texts), "a recorded SMS is at Twilio exactly once"
    assert len(emails) <= sum(at_smtp.values()) <= len(emails) + len(unknown)
    customer_sms = sum(n for sid, n in at_twilio.items() if sid not in texts)
    assert customer_sms <= len(unknown), "an SMS went out that no notification row accounts for"


# --------------------------------------------------------------------------- the scenario


def test_several_hosts_one_loses_power_mid_stream(system: System) -> None:
    rig = system.rig
    parcels, bodies = stream_of_at_least(WEBHOOKS)
    fleet = Fleet(rig, web=2, worker=2, scheduler=2)
    fleet.start(per_host={"web": {"WEB_CONCURRENCY": "1"}})
    addresses = [h.address for hosts in fleet.hosts.values() for h in hosts]
    assert len(set(addresses)) == 6 and all(a.startswith("127.0.0.") and a != "127.0.0.1" for a in addresses)
    groups = {h.proc.popen.pid for hosts in fleet.hosts.values() for h in hosts}
    assert all(os.getpgid(pid) == pid for pid in groups), "every host is its own process group"

    client = redis.Redis.from_url(rig.redis.url)
    ticks = TickWatch(client)
    threading.Thread(target=ticks.run, daemon=True).start()
    assert rig.pg is not None
    pool = ConnectionWatch(fleet, rig.pg.port)  # a measurement for the README, not an assertion
    threading.Thread(target=pool.run, daemon=True).start()
    rig.twilio.fail_next(500, code=20500, times=20)  # SMS retries wait in the workers' delay queues
    spread = SpreadSender(fleet.web_urls(open_shop(rig, parcels)), rate_per_s=RATE)
    senders = spread.start_background(bodies)

    # mid-stream, while both worker hosts hold messages: one loses power
    wait(lambda: spread.sent >= len(bodies) // 2, 120, "half the stream sent", every=0.05)
    dead_worker, surviving_worker = fleet.hosts["worker"][1], fleet.hosts["worker"][0]
    rabbit_held = 0
    if system.rabbit is None:
        wait(lambda: consumers_holding(client) >= 2, 30, "both worker hosts holding messages", every=0.01)
    else:
        rabbit, group = system.rabbit, dead_worker.proc.popen.pid
        rabbit_held = wait(
            lambda: unacked_by_group(rabbit, system.vhost)[group], 30, "the worker host holding messages"
        )
    fleet.power_off(dead_worker)
    dead_since_ms, fault_over = int(time.time() * 1000), time.monotonic()

    # ... and so does the scheduler that claimed the latest tick
    schedulers = fleet.hosts["scheduler"]
    assert all(s.alive for s in schedulers), "two schedulers ran side by side until now"
    active = max(schedulers, key=lambda s: max((when for when, _ in claims(s)), default=datetime.min))
    standby = next(s for s in schedulers if s is not active)
    fleet.power_off(active)
    # the last health-check tick the dead one (or anyone) had claimed; the next one is the standby's
    claimed_at_kill, scheduler_killed = ticks.last_slot("alerts"), time.monotonic()

    orphans: dict[str, list[Orphan]] = {}
    if system.rabbit is None:
        time.sleep(5)  # live consumers beat at least every 5 s; the dead one's ack sets are frozen
        orphans = held_by_dead_consumers(client, dead_since_ms)
        assert orphans, "the dead worker host held unacked messages when it died"

    wait(
        lambda: ticks.last_slot("alerts") > claimed_at_kill,
        TICK_KEY_EXPIRY_S,
        "the standby scheduler to claim a tick",
        every=0.5,
    )
    takeover_s = time.monotonic() - scheduler_killed
    for thread in senders:
        thread.join(300)
    ledger = settle(
        rig,
        f"several hosts on {system.broker}: 2 web, 2 worker, 2 scheduler; "
        "a worker host and the active scheduler lose power",
        parcels,
        spread.report,
        fault_over_at=fault_over,
        timeout_s=240,
    )
    ticks.stop.set()
    pool.stop.set()
    report = spread.report

    assert report.sent >= 2000 and all(n >= len(bodies) // 3 for n in spread.per_host())
    assert_kept_its_word(ledger, rig, report, max_uncertain=WORKER_THREADS)
    one_effect_each(rig, report.accepted, bodies)
    each_customer_message_once(rig, parcels)

    # what the dead host held came back and was finished by the survivor
    assert not dead_worker.alive and surviving_worker.alive and standby.alive
    assert all(client.scard(key) == 0 for key in orphans), "the dead host's ack sets were given back"
    held = [o for found in orphans.values() for o in found]
    events = {o.args[1] for o in held if o.actor == "process_event"}
    assert events <= report.accepted
    sends = {int(o.args[0]) for o in held if o.actor == "send_notification"}
    engine = sa.create_engine(rig.database_url)
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(
                sa.select(notifications.c.id, notifications.c.status).where(notifications.c.id.in_(sends))
            ).all()
        )
        done = set(
            conn.execute(sa.select(deliveries.c.event_id).where(deliveries.c.event_id.in_(events))).scalars()
        )
    engine.dispose()
    assert done == events and set(statuses) == sends
    assert not any(s in UNRESOLVED for s in statuses.values())

    # single active: each tick claimed by one scheduler of the two; the standby took over
    every = CADENCE_S["alerts"]
    assert any(
        job == "alerts" and int(when.timestamp() // every) > claimed_at_kill for when, job in claims(standby)
    )
    fleet.power_off(standby)  # no claim in flight while the books are compared
    ticks.poll()
    client.close()
    by_job = Counter(job for s in schedulers for _, job in claims(s))
    slots = Counter(job for job, _ in ticks.seen)
    assert by_job == slots, f"every tick claimed once between two schedulers: {by_job} vs {slots}"
    print(
        f"\nhosts on {system.broker} (RabbitMQ: {rabbit_held} unacked on the dead host): {len(bodies)} webhooks, per web host {spread.per_host()}; dead worker host held "
        f"{Counter(o.actor for o in held)}; ticks claimed {dict(by_job)} "
        f"(active {active.name} {Counter(j for _, j in claims(active))}, "
        f"standby {standby.name} {Counter(j for _, j in claims(standby))}), took over in {takeover_s:.0f} s; "
        f"most PostgreSQL connections held per host: {dict(pool.peak)}"
    )
