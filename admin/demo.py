"""A realistic day of Shippo traffic for three demo merchants (``make demo``).

Several carriers, both locales, every exception class, a label error, a stalled parcel,
a few duplicates and out-of-order deliveries, and one merchant on HMAC signatures. Every
call goes through the public surface: the admin API for merchants and orders, the
receiver for webhooks.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from admin.replay import post
from config import Settings

HMAC_SECRET = "demo-northwind-hmac-secret-0001"

MERCHANTS: dict[str, dict[str, Any]] = {
    "northwind": {
        "name": "Northwind Goods",
        "email_from": "shipping@northwind.example",
        "sms_from": "+15005550006",
        "support_email": "help@northwind.example",
        "alert_email": "ops@northwind.example",
        "order_ref_pattern": r"#(\w+)",
        "sms_quiet_hours": "22:00-07:00",
        "timezone": "America/New_York",
        "hmac_secrets": [HMAC_SECRET],
    },
    "tienda-sol": {
        "name": "Tienda Sol",
        "email_from": "envios@tiendasol.example",
        "sms_from": "+15005550007",
        "default_locale": "es",
        "timezone": "America/Mexico_City",
        "alert_email": "ops@tiendasol.example",
        "order_ref_pattern": r"#(\w+)",
        "tracking_url_template": "https://rastreo.tiendasol.example/{carrier}/{tracking_number}",
    },
    "maple-goods": {
        "name": "Maple Goods",
        "email_from": "orders@maplegoods.example",
        "timezone": "America/Toronto",
        "alert_email": "ops@maplegoods.example",
        "order_ref_pattern": r"#(\w+)",
    },
}

CARRIERS = {
    "northwind": ["usps", "ups", "fedex"],
    "tienda-sol": ["fedex", "dhl_express"],
    "maple-goods": ["canada_post", "ups", "purolator"],
}

# (Shippo status, substatus code) steps after the label; the last step is where the parcel is now.
STORIES: dict[str, list[tuple[str, str]]] = {
    "delivered": [
        ("PRE_TRANSIT", "information_received"),
        ("TRANSIT", "package_accepted"),
        ("TRANSIT", "package_departed"),
        ("TRANSIT", "out_for_delivery"),
        ("DELIVERED", "delivered"),
    ],
    "attempted": [
        ("TRANSIT", "package_accepted"),
        ("TRANSIT", "out_for_delivery"),
        ("TRANSIT", "delivery_attempted"),
    ],
    "attempt-then-delivered": [
        ("TRANSIT", "package_accepted"),
        ("TRANSIT", "out_for_delivery"),
        ("TRANSIT", "delivery_attempted"),
        ("TRANSIT", "out_for_delivery"),
        ("DELIVERED", "delivered"),
    ],
    "address": [("TRANSIT", "package_accepted"), ("TRANSIT", "address_issue")],
    "held": [("TRANSIT", "package_accepted"), ("TRANSIT", "package_held")],
    "delayed": [("TRANSIT", "package_accepted"), ("TRANSIT", "delayed")],
    "damaged": [("TRANSIT", "package_accepted"), ("TRANSIT", "package_damaged")],
    "lost": [("TRANSIT", "package_accepted"), ("FAILURE", "package_lost")],
    "undeliverable": [("TRANSIT", "package_accepted"), ("FAILURE", "package_undeliverable")],
    "disposed": [("TRANSIT", "package_accepted"), ("FAILURE", "package_disposed")],
    "contact": [("TRANSIT", "package_accepted"), ("TRANSIT", "contact_carrier")],
    "returned": [
        ("TRANSIT", "package_accepted"),
        ("TRANSIT", "address_issue"),
        ("RETURNED", "return_to_sender"),
    ],
    "pickup": [("TRANSIT", "package_accepted"), ("TRANSIT", "pickup_available")],
    "in-transit": [("PRE_TRANSIT", "information_received"), ("TRANSIT", "package_processed")],
    "stalled": [("TRANSIT", "package_accepted")],
    "label-error": [],
}

CUSTOMERS = [
    ("Jane Doe", "en"),
    ("Ana García", "es"),
    ("Li Wei", "en"),
    ("Lucía Torres", "es"),
    ("Sam O'Brien", "en"),
    ("Marie Tremblay", "en"),
]


def _id(*parts: object) -> str:
    return hashlib.md5("/".join(map(str, parts)).encode(), usedforsecurity=False).hexdigest()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _transaction(ref: str, carrier: str, tracking: str, at: datetime, error: bool) -> dict[str, Any]:
    return {
        "event": "transaction_created",
        "test": False,
        "data": {
            "object_id": _id("txn", tracking),
            "status": "ERROR" if error else "SUCCESS",
            "object_state": "VALID",
            "object_created": _iso(at),
            "object_updated": _iso(at),
            "tracking_number": "" if error else tracking,
            "tracking_status": "UNKNOWN",
            "eta": _iso(at + timedelta(days=4)),
            "rate": {"object_id": _id("rate", tracking), "provider": carrier.upper(), "amount": "8.40"},
            "tracking_url_provider": "",
            "label_url": "" if error else f"https://labels.example/{tracking}.pdf",
            "messages": [
                {
                    "source": carrier.upper(),
                    "code": "invalid_address",
                    "text": "Destination ZIP code does not match city",
                }
            ]
            if error
            else [],
            "metadata": f"Order #{ref}",
            "test": False,
        },
    }


def _track(
    rng: random.Random,
    carrier: str,
    tracking: str,
    txn: str,
    steps: list[tuple[str, str]],
    times: list[datetime],
) -> dict[str, Any]:
    history = []
    for (status, code), at in zip(steps, times, strict=True):
        history.append(
            {
                "object_id": _id("scan", tracking, code, at),
                "object_created": _iso(at + timedelta(minutes=20)),
                "object_updated": None,
                "status": status,
                "substatus": {
                    "code": code,
                    "text": code.replace("_", " "),
                    "action_required": code
                    in {
                        "address_issue",
                        "delivery_attempted",
                        "package_held",
                        "package_damaged",
                        "package_lost",
                        "package_undeliverable",
                        "contact_carrier",
                        "pickup_available",
                    },
                },
                "status_details": code.replace("_", " ").capitalize(),
                "status_date": _iso(at),
                "location": {
                    "city": rng.choice(["Memphis", "Louisville", "Dallas", "Toronto", "Monterrey"]),
                    "state": "",
                    "zip": "",
                    "country": "US",
                },
            }
        )
    return {
        "event": "track_updated",
        "test": False,
        "data": {
            "carrier": carrier,
            "tracking_number": tracking,
            "transaction": txn,
            "metadata": None,
            "eta": _iso(times[-1] + timedelta(days=2)),
            "tracking_status": history[-1],
            "tracking_history": history,
            "messages": [],
            "test": False,
        },
    }


def _admin(settings: Settings, method: str, path: str, body: dict[str, Any]) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.admin_port}{path}",
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {settings.admin_token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return int(response.status)


def _merchant_token(settings: Settings, slug: str) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.admin_port}/api/merchants/{slug}",
        headers={"Authorization": f"Bearer {settings.admin_token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return str(json.loads(response.read())["webhook_token"])


def _scan_times(rng: random.Random, start: datetime, count: int) -> list[datetime]:
    """Scan times in story order: 2 h after the label, then 2.5–4 h between scans. Each gap is
    drawn on its own and added up, so a later step (DELIVERED) is never dated before an earlier
    one (OUT_FOR_DELIVERY)."""
    times: list[datetime] = []
    at = start + timedelta(hours=2)
    for _ in range(count):
        times.append(at)
        at += timedelta(hours=rng.uniform(2.5, 4.0))
    return times


def build_day(now: datetime, seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    """(merchant, body) pairs for one day, roughly in arrival order."""
    rng = random.Random(seed)
    traffic: list[tuple[datetime, str, dict[str, Any]]] = []
    order_no = 2000
    for slug in MERCHANTS:
        for story, steps in STORIES.items():
            order_no += 1
            carrier = rng.choice(CARRIERS[slug])
            tracking = f"{carrier[:3].upper()}{rng.randrange(10**11, 10**12)}"
            start = now - timedelta(hours=rng.uniform(18, 23))
            if story == "stalled":
                start = now - timedelta(days=5)
            label = _transaction(str(order_no), carrier, tracking, start, error=story == "label-error")
            traffic.append((start, slug, label))
            if not steps:
                continue
            times = _scan_times(rng, start, len(steps))
            txn = label["data"]["object_id"]
            for i in range(1, len(steps) + 1):
                traffic.append(
                    (times[i - 1], slug, _track(rng, carrier, tracking, txn, steps[:i], times[:i]))
                )
    traffic.sort(key=lambda item: item[0])
    bodies = [(slug, body) for _, slug, body in traffic]
    # Shippo's realities: a few duplicates and out-of-order deliveries
    for i in rng.sample(range(len(bodies)), k=6):
        bodies.insert(min(i + rng.randint(1, 5), len(bodies)), bodies[i])
    for i in rng.sample(range(len(bodies) - 3), k=5):
        bodies[i], bodies[i + 2] = bodies[i + 2], bodies[i]
    return bodies


def run_demo(settings: Settings, *, pace_s: float = 0.05) -> dict[str, int]:
    for slug, profile in MERCHANTS.items():
        _admin(settings, "PUT", f"/api/merchants/{slug}", profile)
    now = datetime.now(UTC)
    day = build_day(now)
    refs = sorted(
        {
            (slug, body["data"]["metadata"].split("#")[1])
            for slug, body in day
            if body["event"] == "transaction_created"
        }
    )
    for i, (slug, ref) in enumerate(refs):
        name, locale = CUSTOMERS[i % len(CUSTOMERS)]
        if slug == "tienda-sol":
            locale = "es"
        user = name.split()[0].lower().replace("í", "i")
        _admin(
            settings,
            "PUT",
            f"/api/merchants/{slug}/orders/{ref}",
            {
                "customer": {
                    "name": name,
                    "email": f"{user}.{ref}@example.com",
                    "phone": f"+1415555{int(ref) % 10000:04d}",
                    "locale": locale,
                },
                "notify": {"email": True, "sms": slug != "maple-goods"},
            },
        )
    tokens = {slug: _merchant_token(settings, slug) for slug in MERCHANTS}
    outcomes: Counter[str] = Counter()
    base = settings.public_url.rstrip("/")
    for slug, body in day:
        url = f"{base}/webhooks/shippo/{slug}?token={tokens[slug]}"
        secret = HMAC_SECRET if MERCHANTS[slug].get("hmac_secrets") else None
        status, answer = post(url, json.dumps(body).encode(), secret)
        outcomes[str(answer.get("status") or status)] += 1
        time.sleep(pace_s)
    # a merchant whose secret was rotated on Shippo's side but not here: 401s the dashboard flags
    for body in [b for s, b in day if s == "northwind"][:3]:
        status, answer = post(
            f"{base}/webhooks/shippo/northwind?token={tokens['northwind']}",
            json.dumps(body).encode(),
            "a-rotated-secret-we-do-not-know",
        )
        outcomes[str(status)] += 1
    return dict(outcomes)
