"""Through the HTTP surface, on SQLite and PostgreSQL: Shippo webhooks for a Royal Mail, an Evri and
an unknown carrier's shipment reach the outbox (no SMTP/Twilio configured) with the carrier's own
tracking link, or — for the unknown carrier — "your carrier" / "tu transportista", the tracking
number and no link at all."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest

from tests.fixtures.shippo import body
from tests.integration.conftest import System
from tests.support import notify_harness as h

pytestmark = pytest.mark.redis

#: order ref → (customer email, phone, locale, rate provider as Shippo names it, carrier token,
#: tracking number, Shippo's tracking_url_provider)
ROYAL_MAIL = "1001"
EVRI = "1002"
UNKNOWN = "1003"
SHIPMENTS: dict[str, tuple[str, str, str, str, str, str, str | None]] = {
    ROYAL_MAIL: (
        "rm@example.com",
        "+15551230001",
        "en",
        "Royal Mail",
        "royal_mail",
        "FQ 1234/5678#5GB",
        None,
    ),
    # Shippo's link for this one is an attacker's: the carrier's own page is used instead
    EVRI: (
        "evri@example.com",
        "+15551230002",
        "en",
        "Hermes UK",
        "hermes_uk",
        "H01AXY0012345678",
        "https://www.evri.com.evil.example/track/H01AXY0012345678",
    ),
    UNKNOWN: (
        "ana@example.com",
        "+15551230003",
        "es",
        "Zephyr Freight",
        "zephyr_freight",
        "AF-7731 0042",
        "https://track.zephyr-freight.example/t?n=AF-7731",
    ),
}
EXPECTED_LINK = {
    ROYAL_MAIL: "https://www.royalmail.com/track-your-item#/tracking-results/FQ%201234%2F5678%235GB",
    EVRI: "https://www.evri.com/track/parcel/H01AXY0012345678/details",
    UNKNOWN: None,
}


def _label(ref: str) -> bytes:
    _email, _phone, _locale, provider, _token, number, url = SHIPMENTS[ref]
    label = body("transaction_created.json")
    label["data"].update(
        object_id=f"label{ref}" + "0" * 23,
        metadata=f"Order {ref}",
        tracking_number=number,
        tracking_url_provider=url,
        rate={"object_id": f"rate{ref}" + "0" * 24, "provider": provider},
    )
    return json.dumps(label).encode()


def _attempt(ref: str) -> bytes:
    _email, _phone, _locale, _provider, token, number, _url = SHIPMENTS[ref]
    track = body("track_updated_delivery_attempted.json")
    track["data"].update(carrier=token, tracking_number=number, transaction=f"label{ref}" + "0" * 23)
    for status in [track["data"]["tracking_status"], *track["data"].get("tracking_history", [])]:
        status["object_id"] = f"{ref}-{status['object_id']}"[:64]
    return json.dumps(track).encode()


def _hrefs(html: str) -> set[str]:
    return set(re.findall(r'href="([^"]*)"', html))


def test_webhooks_for_known_and_unknown_carriers_reach_the_outbox_with_the_right_link(
    make_system: Callable[..., System], database_url: str
) -> None:
    system = make_system(database_url)  # no SMTP, no Twilio: everything is captured in the outbox
    merchant = system.create_merchant("acme", **h.merchant_profile())
    for ref, (email, phone, locale, *_rest) in SHIPMENTS.items():
        name = "Ana García" if locale == "es" else "Jane Doe"
        h.register_order(system, ref, name=name, email=email, phone=phone, locale=locale)
    system.start_worker()
    for ref in SHIPMENTS:
        assert system.post(merchant, _label(ref)).status_code == 200
    system.drain()  # the "shipped" emails go out before the parcels move on
    for ref in SHIPMENTS:
        assert system.post(merchant, _attempt(ref)).status_code == 200
    system.drain()

    outbox = system.admin.get("/api/outbox?merchant=acme&limit=100", headers=system.auth()).get_json()[
        "messages"
    ]
    for ref, (email, phone, _locale, _provider, _token, number, _url) in SHIPMENTS.items():
        mine = [m for m in outbox if m["to"] in (email, phone)]
        got = sorted((m["channel"], m["kind"]) for m in mine)
        assert got == [
            ("email", "delivery_attempted"),
            ("email", "shipped"),
            ("sms", "delivery_attempted"),
        ], ref
        link = EXPECTED_LINK[ref]
        for m in mine:
            assert m["status"] == "sent"
            text, html = m["text"], m["html"] or ""
            assert "evil.example" not in text + html and "zephyr-freight" not in text + html
            if link is not None:
                assert link in text, (ref, m["kind"], m["channel"], text)
                assert m["channel"] == "sms" or link.replace("&", "&amp;") in _hrefs(html)
            else:
                assert number in text
                links = re.findall(r"https?://\S+", text) + sorted(_hrefs(html))
                assert all(u.startswith("http://127.0.0.1:8000/unsubscribe/acme/") for u in links), links
                assert "Sigue tu paquete" not in text + html and "Zephyr" not in text + html
        attempt_sms = next(m for m in mine if m["channel"] == "sms")["text"]
        attempt_email = next(
            m for m in mine if m["kind"] == "delivery_attempted" and m["channel"] == "email"
        )["text"]
        if ref == ROYAL_MAIL:
            assert "Royal Mail tried to deliver order 1001" in attempt_sms and attempt_sms.endswith(
                f"Track: {link}"
            )
            assert "Carrier: Royal Mail" in attempt_email
        elif ref == EVRI:
            assert "Evri tried to deliver order 1002" in attempt_sms
        else:
            assert "tu transportista hizo un intento de entrega del pedido 1003" in attempt_sms
            assert attempt_sms.endswith(f"Seguimiento: {number}")
            assert "Tu transportista intentó entregar el pedido 1003" in attempt_email
            assert (
                f"Número de seguimiento: {number}" in attempt_email and "Transportista:" not in attempt_email
            )

    # the admin API's order view shows the same link (or none) as the messages
    for ref, link in EXPECTED_LINK.items():
        order = system.admin.get(f"/api/merchants/acme/orders/{ref}", headers=system.auth()).get_json()
        assert [s["tracking_url"] for s in order["shipments"]] == [link]
