"""A track update whose latest scan is unchanged but whose ``eta`` moved: not a duplicate, the
shipment's eta follows it, and the customer hears ``eta_changed`` once per new eta — only when
the merchant switched the kind on (it is off by default, like ``in_transit``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.shippo import scenario
from tests.integration.conftest import System
from tests.integration.test_receiver_properties import run_queued
from tests.support import notify_harness as h

pytestmark = pytest.mark.redis

LABEL, _PRE, TRANSIT, *_ = scenario("delivered")  # Order 1001, USPS; eta = original_eta = March 6
PHONE = "+15551230001"
NEW_ETA = "2026-03-08T15:04:00.000Z"


def with_eta(body: bytes, eta: str) -> bytes:
    """The same track (same latest scan), the carrier's estimate moved to ``eta``."""
    parsed: dict[str, Any] = json.loads(body)
    parsed["data"]["eta"] = eta
    return json.dumps(parsed).encode()


def _shipment(system: System) -> dict[str, Any]:
    order = system.admin.get("/api/merchants/acme/orders/1001", headers=system.auth()).get_json()
    [shipment] = order["shipments"]
    return dict(shipment)


@pytest.mark.parametrize("enabled", [False, True], ids=["default", "eta_changed_on"])
def test_an_eta_only_update_moves_the_eta_and_is_told_once_when_enabled(
    make_system: Callable[..., System], database_url: str, enabled: bool
) -> None:
    with h.wired(make_system, database_url) as (system, smtp, twilio):
        notify = {"email": ["shipped", "eta_changed"], "sms": ["eta_changed"]} if enabled else None
        merchant = system.create_merchant("acme", **h.merchant_profile(notify=notify))
        h.register_order(system, "1001", email="jane@example.com", phone=PHONE)
        system.start_worker()
        for body in (LABEL, TRANSIT):
            assert system.post(merchant, body).get_json()["status"] == "queued"
            system.drain()
        assert _shipment(system)["eta"] == "2026-03-06T15:04:00+00:00"
        sent_before = len(smtp.messages) + len(twilio.messages)

        moved = system.post(merchant, with_eta(TRANSIT, NEW_ETA)).get_json()
        assert moved["status"] == "queued", "same scan, new eta: not a duplicate"
        system.drain()
        shipment = _shipment(system)
        assert shipment["eta"] == "2026-03-08T15:04:00+00:00"
        assert [c["kind"] for c in shipment["timeline"]].count("eta_changed") == 1

        # the same estimate again — byte for byte, or written another way — is a duplicate, and so
        # is a retry of the update from before the move (its identity did not change)
        for again in (with_eta(TRANSIT, NEW_ETA), with_eta(TRANSIT, "2026-03-08T15:04:00Z"), TRANSIT):
            assert system.post(merchant, again).get_json()["status"] == "duplicate"
        system.drain()
        assert _shipment(system)["eta"] == "2026-03-08T15:04:00+00:00"

        eta_emails = [m for m in smtp.messages if "New delivery estimate" in str(m.message["Subject"])]
        eta_texts = [m for m in twilio.messages if "new delivery estimate" in m["body"]]
        rows = [r for r in h.rows(system, policy_suppressed=True) if r.kind == "eta_changed"]
        if enabled:
            assert [m.rcpt_tos for m in eta_emails] == [["jane@example.com"]]
            assert "March 8, 2026" in h.text_part(eta_emails[0])
            assert [m["to"] for m in eta_texts] == [PHONE]
            assert sorted((r.channel, r.status) for r in rows) == [("email", "sent"), ("sms", "sent")]
        else:
            assert eta_emails == [] and eta_texts == []
            assert len(smtp.messages) + len(twilio.messages) == sent_before
            assert {(r.status, r.error) for r in rows} == {
                ("suppressed", "kind disabled for this channel (merchant notify settings)")
            }


def test_each_new_eta_is_told_once_and_an_estimate_seen_before_is_a_duplicate(
    make_system: Callable[..., System], database_url: str
) -> None:
    with h.wired(make_system, database_url) as (system, smtp, twilio):
        merchant = system.create_merchant(
            "acme", **h.merchant_profile(notify={"email": ["eta_changed"], "sms": []})
        )
        h.register_order(system, "1001", email="jane@example.com", sms=False)
        system.start_worker()
        march_9 = with_eta(TRANSIT, "2026-03-09T15:04:00Z")
        for body in (LABEL, TRANSIT, with_eta(TRANSIT, NEW_ETA), march_9):
            assert system.post(merchant, body).get_json()["status"] == "queued"
            system.drain()
        assert system.post(merchant, with_eta(TRANSIT, NEW_ETA)).get_json()["status"] == "duplicate"
        system.drain()
        assert _shipment(system)["eta"] == "2026-03-09T15:04:00+00:00"
        emails = [m for m in smtp.messages if "New delivery estimate" in str(m.message["Subject"])]
        assert [("March 8, 2026" in h.text_part(m), "March 9, 2026" in h.text_part(m)) for m in emails] == [
            (True, False),
            (False, True),
        ]
        assert [r.status for r in h.rows(system) if r.kind == "eta_changed"] == ["sent", "sent"]


# --------------------------------------------------------------------------- the identity rule, as a property

_ETAS = [f"2026-03-0{day}T15:04:00Z" for day in (6, 7, 8, 9)]  # 6: the original estimate
_ETA_FORMS = (
    lambda iso: iso,
    lambda iso: iso.replace("Z", ".000Z"),
    lambda iso: iso.replace("Z", "+00:00"),
    lambda iso: iso.replace("T15:", "T10:").replace("Z", "-05:00"),  # the same instant
)
_examples = iter(range(10**6))


def _for_shipment(raw: bytes, n: int, *, eta: str | None = None) -> bytes:
    """``raw`` for shipment/order number ``n`` (each example is a shipment of its own)."""
    parsed: dict[str, Any] = json.loads(raw)
    data = parsed["data"]
    data["tracking_number"] = f"9400{n:08d}"
    if parsed["event"] == "transaction_created":
        data["object_id"], data["metadata"] = f"txn{n:08d}", f"Order {n}"
    else:
        data["transaction"] = f"txn{n:08d}"
    if eta is not None:
        data["eta"] = eta
    return json.dumps(parsed).encode()


@pytest.fixture()
def eta_system(make_system: Callable[..., System], database_url: str) -> System:
    system = make_system(database_url)
    system.merchant = system.create_merchant(  # type: ignore[attr-defined]
        "acme", **h.merchant_profile(notify={"email": ["eta_changed"], "sms": ["eta_changed"]})
    )
    return system


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.tuples(st.integers(0, len(_ETAS) - 1), st.integers(0, len(_ETA_FORMS) - 1)), max_size=8))
def test_through_the_receiver_every_distinct_new_eta_is_told_once_and_repeats_are_duplicates(
    eta_system: System, draws: list[tuple[int, int]]
) -> None:
    """Any sequence (duplicates, shuffles, the same eta written another way) of track bodies for
    one scan, posted to the real receiver and run through the actors in arrival order."""
    system, merchant = eta_system, eta_system.merchant  # type: ignore[attr-defined]
    n = next(_examples)
    h.register_order(system, str(n), email="jane@example.com", phone=PHONE)
    for raw in (LABEL, TRANSIT):
        assert system.post(merchant, _for_shipment(raw, n)).get_json()["status"] == "queued"
    answers = [
        system.post(merchant, _for_shipment(TRANSIT, n, eta=_ETA_FORMS[form](_ETAS[i]))).get_json()["status"]
        for i, form in draws
    ]
    run_queued(system)

    new_etas = list(dict.fromkeys(i for i, _ in draws if i != 0))  # 0: did not move: the base's identity
    assert answers.count("queued") == len(new_etas) and answers.count("duplicate") == len(draws) - len(
        new_etas
    )
    order = system.admin.get(f"/api/merchants/acme/orders/{n}", headers=system.auth()).get_json()
    [shipment] = order["shipments"]
    last = _ETAS[new_etas[-1]] if new_etas else _ETAS[0]
    assert shipment["eta"] == last.replace("Z", "+00:00")
    told = [x for x in order["notifications"] if x["kind"] == "eta_changed"]
    for channel in ("email", "sms"):
        assert len([x for x in told if x["channel"] == channel]) == len(new_etas), "one per distinct eta"
