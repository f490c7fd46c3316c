"""The three sample scenarios, end to end over real SMTP and the real twilio client: exactly the
expected customer messages and merchant alerts — in order, duplicated, and shuffled.

Expected messages, derived from ``domain.policy`` (DEFAULT_NOTIFY; bursts collapse; an
``action_required`` exception also alerts the merchant) and the fixtures' scans:

* delivered (Order 1001, USPS): label → ``shipped``; PRE_TRANSIT/TRANSIT scans → ``in_transit``
  (off by default: nothing); out for delivery → ``out_for_delivery``; delivered → ``delivered``.
  SMS carries only out_for_delivery and delivered by default.
* attempt-then-delivered (Order 1002, UPS, customer locale ``es``): as above plus the
  ``delivery_attempted`` exception (email + SMS, action required → merchant
  ``exception_action_required``). The second "out for delivery" after the attempt is the same
  status the shipment already had (out_for_delivery, exception cleared): no second message —
  the key for a status kind has no occurrence, so it could not be sent twice anyway.
* returned (Order 1003, FedEx): ``shipped``; ``address_issue`` (email + SMS + merchant alert);
  return to sender → ``returned_to_sender`` (email only by default; no action required, no alert).

In order (and duplicated), each webhook is drained before the next, so the list is exact.
Shuffled, a later state may arrive first — every track webhook carries the whole scan history,
so an early "delivered" applies all scans in one burst and only "delivered" fires; an
"out_for_delivery" arriving after "delivered" is history only. So shuffled we assert the
invariants: nothing outside the in-order list, nothing twice, per channel never an older step
after a newer one, the final-state message present, and every link right.

Every scenario runs on Redis and on RabbitMQ (``on_both_brokers``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

import pytest

from notifiers.smtp import message_id_for
from tests.fixtures.shippo import scenario
from tests.integration.conftest import System, on_both_brokers
from tests.support import notify_harness as h
from tests.support.smtp_server import SmtpServer
from tests.support.twilio_server import TwilioServer

pytestmark = [pytest.mark.redis, on_both_brokers]

CUSTOMERS: dict[str, dict[str, str | None]] = {
    "1001": {"name": "Jane Doe", "email": "jane@example.com", "phone": "+15551230001", "locale": None},
    "1002": {"name": "José Pérez", "email": "jose@example.com", "phone": "+15551230002", "locale": "es"},
    "1003": {"name": "Kim Lee", "email": "kim@example.com", "phone": "+15551230003", "locale": None},
}
ORDER_OF = {"delivered": "1001", "attempt-then-delivered": "1002", "returned": "1003"}
TRACKING = {
    "1001": (
        "9205590164917312751089",
        "https://tools.usps.com/go/TrackConfirmAction_input?origTrackNum=9205590164917312751089",
    ),
    "1002": ("1Z999AA10123456784", "https://www.ups.com/track?tracknum=1Z999AA10123456784&loc=en_US"),
    "1003": (
        "794644790138",
        "https://www.fedex.com/apps/fedextrack/?action=track&cntry_code=us&trackingnumber=794644790138",
    ),
}

# (order, channel, kind) in the order they go out when the webhooks arrive in order.
EXPECTED_CUSTOMER = [
    ("1001", "email", "shipped"),
    ("1001", "email", "out_for_delivery"),
    ("1001", "sms", "out_for_delivery"),
    ("1001", "email", "delivered"),
    ("1001", "sms", "delivered"),
    ("1002", "email", "shipped"),
    ("1002", "email", "out_for_delivery"),
    ("1002", "sms", "out_for_delivery"),
    ("1002", "email", "delivery_attempted"),
    ("1002", "sms", "delivery_attempted"),
    ("1002", "email", "delivered"),
    ("1002", "sms", "delivered"),
    ("1003", "email", "shipped"),
    ("1003", "email", "address_issue"),
    ("1003", "sms", "address_issue"),
    ("1003", "email", "returned_to_sender"),
]
EXPECTED_ALERTS = [("1002", "exception_action_required"), ("1003", "exception_action_required")]
FINAL = {
    ("1001", "email", "delivered"),
    ("1001", "sms", "delivered"),
    ("1002", "email", "delivered"),
    ("1002", "sms", "delivered"),
    ("1003", "email", "returned_to_sender"),
}
LOCALE = {"1001": "en", "1002": "es", "1003": "en"}


def _setup(
    make_system: Callable[..., System], url: str, smtp: SmtpServer, twilio: TwilioServer
) -> tuple[System, dict[str, object]]:
    system = make_system(url, **h.channel_overrides(smtp, twilio))
    merchant = system.create_merchant("acme", **h.merchant_profile())
    for ref, c in CUSTOMERS.items():
        h.register_order(
            system, ref, name=str(c["name"]), email=str(c["email"]), phone=str(c["phone"]), locale=c["locale"]
        )
    system.start_worker()
    return system, merchant


def _all_webhooks() -> list[tuple[str, bytes]]:
    return [(ORDER_OF[name], body) for name in ORDER_OF for body in scenario(name)]


def _wire(system: System, smtp: SmtpServer, twilio: TwilioServer) -> list[tuple[str, str, str]]:
    """(order, channel, kind) of every customer message that reached SMTP/Twilio, in wire order,
    mapped back through the provider ids recorded on the rows."""
    rows = {r.provider_id: r for r in h.rows(system) if r.provider_id}
    by_key = {r.key: r for r in h.rows(system)}
    wire: list[tuple[str, str, str]] = []
    for msg in smtp.messages:
        row = rows.get(str(msg.message["Message-ID"]))
        assert row is not None, f"an email no row accounts for: {msg.message['Subject']}"
        assert message_id_for(row.key) == msg.message["Message-ID"]
        if row.audience == "customer":
            wire.append((row.key.split(":")[0], "email", row.kind))
    for sms in twilio.messages:
        row = rows.get(sms["sid"])
        assert row is not None, f"an SMS no row accounts for: {sms['body']}"
        wire.append((row.key.split(":")[0], "sms", row.kind))
    assert len(by_key) == len(h.rows(system))
    return sorted(wire, key=lambda w: rows_order(system, w))


def rows_order(system: System, w: tuple[str, str, str]) -> int:
    for r in h.rows(system):
        if r.key.startswith(w[0] + ":") and r.channel == w[1] and r.kind == w[2]:
            return r.id
    return -1


def _check_content(system: System, smtp: SmtpServer, twilio: TwilioServer, *, exact_links: bool) -> None:
    """Recipients, locale and tracking links of everything that went out."""
    assert smtp.messages and twilio.messages, "nothing went out to check"
    rows = {r.provider_id: r for r in h.rows(system) if r.provider_id}
    for msg in smtp.messages:
        row = rows[str(msg.message["Message-ID"])]
        if row.audience == "merchant":
            assert msg.rcpt_tos == [h.ALERTS]
            continue
        ref = row.key.split(":")[0]
        assert msg.rcpt_tos == [CUSTOMERS[ref]["email"]]
        assert row.locale == LOCALE[ref]
        number, link = TRACKING[ref]
        text, html = h.text_part(msg), h.html_part(msg)
        if exact_links:
            assert link in text, (row.kind, text)
            assert link.replace("&", "&amp;") in html
        else:
            assert number in text and number in html
        assert msg.message["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/unsubscribe/acme/")
        if LOCALE[ref] == "es":
            assert "pedido" in str(msg.message["Subject"]).lower()
        else:
            assert "order" in str(msg.message["Subject"]).lower()
    for sms in twilio.messages:
        row = rows[sms["sid"]]
        ref = row.key.split(":")[0]
        assert sms["to"] == CUSTOMERS[ref]["phone"]
        assert sms["from"] == h.SMS_FROM
        assert sms["status_callback"] == "http://127.0.0.1:8000/webhooks/twilio/acme/status"
        number, link = TRACKING[ref]
        assert (link if exact_links else number) in sms["body"]
        assert ("Seguimiento" in sms["body"]) == (LOCALE[ref] == "es")
        assert re.search(r"[.!?] (Track|Seguimiento): http", sms["body"]), sms["body"]


def _alerts(system: System) -> list[tuple[str, str]]:
    return [
        (r.key.split(":")[0], r.kind)
        for r in h.rows(system)
        if r.audience == "merchant" and r.status == "sent"
    ]


@pytest.mark.parametrize("duplicated", [False, True], ids=["once", "duplicated"])
def test_scenarios_in_order_send_exactly_the_expected_messages(
    make_system: Callable[..., System], database_url: str, duplicated: bool
) -> None:
    with h.channels() as (smtp, twilio):
        system, merchant = _setup(make_system, database_url, smtp, twilio)
        for _ref, body in _all_webhooks():
            for _ in range(2 if duplicated else 1):
                assert system.post(merchant, body).status_code == 200
            system.drain()

        assert _wire(system, smtp, twilio) == EXPECTED_CUSTOMER
        assert _alerts(system) == EXPECTED_ALERTS
        assert len(smtp.messages) == sum(1 for e in EXPECTED_CUSTOMER if e[1] == "email") + len(
            EXPECTED_ALERTS
        )
        assert len(twilio.messages) == sum(1 for e in EXPECTED_CUSTOMER if e[1] == "sms")
        assert {r.status for r in h.rows(system)} == {"sent"}, h.by_status(system)
        _check_content(system, smtp, twilio, exact_links=True)


def _labels_first(webhooks: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Shippo sends transaction_created when the label is bought, before any carrier scan."""
    return sorted(webhooks, key=lambda w: b'"transaction_created"' not in w[1][:40])


@pytest.mark.parametrize(
    "seed",
    # "late-label": the transaction_created that names the order may come after the tracks too
    [1, 2, 3, "reversed", "1-late-label", "2-late-label", "reversed-late-label"],
)
def test_scenarios_shuffled_never_send_stale_or_duplicate_messages(
    make_system: Callable[..., System], sqlite_url: str, seed: int | str
) -> None:
    webhooks = _all_webhooks()
    if str(seed).startswith("reversed"):
        webhooks.reverse()
    else:
        random.Random(int(str(seed).split("-")[0])).shuffle(webhooks)
    if not str(seed).endswith("late-label"):
        webhooks = _labels_first(webhooks)
    webhooks += webhooks[: len(webhooks) // 2]  # and some duplicates on top
    with h.channels() as (smtp, twilio):
        system, merchant = _setup(make_system, sqlite_url, smtp, twilio)
        for _ref, body in webhooks:
            assert system.post(merchant, body).status_code == 200
            system.drain()

        wire = _wire(system, smtp, twilio)
        assert len(wire) == len(set(wire)), "a message went out twice"
        assert set(wire) <= set(EXPECTED_CUSTOMER), set(wire) - set(EXPECTED_CUSTOMER)
        assert FINAL <= set(wire), f"final-state messages missing: {FINAL - set(wire)}"
        for ref in CUSTOMERS:
            for channel in ("email", "sms"):
                expected = [e for e in EXPECTED_CUSTOMER if e[0] == ref and e[1] == channel]
                sent = [w for w in wire if w[0] == ref and w[1] == channel]
                positions = [expected.index(w) for w in sent]
                assert positions == sorted(positions), f"stale message for {ref}/{channel}: {sent}"
        alerts = [r for r in h.rows(system) if r.audience == "merchant"]
        assert {r.kind for r in alerts} <= {"exception_action_required"}
        assert len(alerts) <= len(EXPECTED_ALERTS)
        _check_content(system, smtp, twilio, exact_links=False)


def test_scenarios_processed_concurrently_still_send_each_message_at_most_once(
    make_system: Callable[..., System], database_url: str
) -> None:
    """All webhooks (twice) posted at once; four worker threads race. Supersession at send time
    may drop intermediate steps, but never the final state and never a duplicate."""
    with h.channels() as (smtp, twilio):
        system, merchant = _setup(make_system, database_url, smtp, twilio)
        for _ref, body in _all_webhooks() * 2:
            assert system.post(merchant, body).status_code == 200
        system.drain()
        wire = _wire(system, smtp, twilio)
        assert len(wire) == len(set(wire))
        assert set(wire) <= set(EXPECTED_CUSTOMER)
        assert FINAL <= set(wire)
