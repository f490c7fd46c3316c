"""Realistic Shippo traffic for the fault suite, and a sender that behaves like Shippo.

Each order gets a label (``transaction_created``) and 3–5 carrier scans (``track_updated``, each
carrying the history so far), ending delivered. Some webhooks are sent twice, some out of order.
The sender retries a 503 or a refused connection with backoff, the way Shippo retries, and gives
up only after a bounded horizon; everything it had answered 200 must reach state.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

STEPS = [
    ("PRE_TRANSIT", "information_received", "Shipping label created, USPS awaiting item"),
    ("TRANSIT", "package_accepted", "Accepted at USPS origin facility"),
    ("TRANSIT", "package_departed", "Departed USPS regional facility"),
    ("TRANSIT", "out_for_delivery", "Out for delivery"),
    ("DELIVERED", "delivered", "Delivered, front door"),
]


@dataclass(frozen=True)
class Parcel:
    ref: str
    tracking: str
    txn: str
    email: str
    phone: str | None


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _label(p: Parcel, at: datetime) -> dict[str, Any]:
    return {
        "event": "transaction_created",
        "test": False,
        "data": {
            "object_state": "VALID",
            "status": "SUCCESS",
            "object_id": p.txn,
            "object_created": _iso(at),
            "object_updated": _iso(at),
            "tracking_number": p.tracking,
            "tracking_status": "UNKNOWN",
            "rate": {"provider": "USPS"},
            "tracking_url_provider": f"https://tools.usps.com/go/TrackConfirmAction_input?origTrackNum={p.tracking}",
            "metadata": p.ref,
            "messages": [],
        },
    }


def _scan(p: Parcel, index: int, step: tuple[str, str, str], at: datetime) -> dict[str, Any]:
    status, code, text = step
    return {
        "object_id": f"{p.txn[:20]}-scan-{index}",
        "object_created": _iso(at),
        "object_updated": _iso(at),
        "status": status,
        "substatus": {"code": code, "text": text, "action_required": False},
        "status_details": text,
        "status_date": _iso(at),
        "location": {"city": "Phoenix", "state": "AZ", "zip": "85001", "country": "US"},
    }


def _track(p: Parcel, scans: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "event": "track_updated",
        "test": False,
        "data": {
            "carrier": "usps",
            "tracking_number": p.tracking,
            "transaction": p.txn,
            "metadata": None,
            "eta": None,
            "messages": [],
            "test": False,
            "tracking_status": scans[-1],
            "tracking_history": scans,
        },
    }


def traffic(
    orders: int,
    *,
    seed: int,
    sms_every: int = 2,
    duplicates: float = 0.2,
    disorder: float = 0.3,
    prefix: str = "F",
) -> tuple[list[Parcel], list[bytes]]:
    """Parcels and the webhook bodies Shippo would send about them, interleaved across orders."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=2)
    parcels: list[Parcel] = []
    per_order: list[list[bytes]] = []
    for i in range(orders):
        p = Parcel(
            ref=f"{prefix}{i:05d}",
            tracking=f"9205590{seed:04d}{i:08d}",
            txn=f"{seed:04x}{i:028x}",
            email=f"customer{i}@example.com",
            phone=f"+1415555{i % 10000:04d}" if i % sms_every == 0 else None,
        )
        parcels.append(p)
        steps = [STEPS[0], STEPS[1], *[s for s in STEPS[2:4] if rng.random() < 0.6], STEPS[4]]
        at = start + timedelta(minutes=rng.randint(0, 600))
        bodies = [_label(p, at)]
        scans: list[dict[str, Any]] = []
        for index, step in enumerate(steps):
            at += timedelta(minutes=rng.randint(20, 400))
            scans.append(_scan(p, index, step, at))
            bodies.append(_track(p, list(scans)))
        encoded = [json.dumps(b).encode() for b in bodies]
        if rng.random() < disorder:  # two neighbours swapped: Shippo does not promise order
            k = rng.randrange(len(encoded) - 1)
            encoded[k], encoded[k + 1] = encoded[k + 1], encoded[k]
        encoded += [b for b in encoded if rng.random() < duplicates]  # retries and double registrations
        per_order.append(encoded)
    stream: list[bytes] = []
    while any(per_order):  # interleave orders the way a busy account does
        queue = rng.choice([q for q in per_order if q])
        stream.append(queue.pop(0))
    return parcels, stream


@dataclass
class SendReport:
    answers: Counter[str] = field(default_factory=Counter)
    accepted: set[str] = field(default_factory=set)  # event ids answered 200 queued/duplicate
    retries: int = 0
    gave_up: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)  # 4xx: never expected here
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def sent(self) -> int:
        return sum(self.answers.values())


class ShippoSender:
    """POSTs bodies to the receiver from a few threads at a bounded rate; retries like Shippo."""

    def __init__(
        self, webhook_url: str, *, threads: int = 4, rate_per_s: float = 60.0, horizon_s: float = 120.0
    ) -> None:
        parts = urlsplit(webhook_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = f"{parts.path}?{parts.query}"
        self.threads, self.rate_per_s, self.horizon_s = threads, rate_per_s, horizon_s
        self.report = SendReport()

    def _post_once(self, body: bytes) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request("POST", self.path, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            try:
                return response.status, json.loads(payload)
            except ValueError:
                return response.status, {}
        finally:
            conn.close()

    def deliver(self, body: bytes) -> None:
        deadline = time.monotonic() + self.horizon_s
        backoff = 0.25
        while True:
            try:
                status, answer = self._post_once(body)
            except OSError:
                status, answer = 0, {}
            if status == 200:
                with self.report.lock:
                    self.report.answers[answer.get("status", "?")] += 1
                    self.report.accepted.add(answer["event_id"])
                return
            if status in (0, 502, 503, 504) and time.monotonic() < deadline:
                with self.report.lock:
                    self.report.retries += 1
                time.sleep(backoff)
                backoff = min(backoff * 2, 3.0)
                continue
            with self.report.lock:
                if status in (0, 502, 503, 504):
                    self.report.gave_up += 1
                else:
                    self.report.refused.append((status, json.dumps(answer)[:200]))
            return

    def send_all(self, bodies: list[bytes], *, concurrent_copies: int = 1) -> SendReport:
        """Send every body (``concurrent_copies`` at once each, for a duplicate storm); returns when all
        were answered or given up."""
        work = [b for b in bodies for _ in range(concurrent_copies)]
        lock = threading.Lock()
        interval = 1.0 / self.rate_per_s
        next_slot = [time.monotonic()]

        def run() -> None:
            while True:
                with lock:
                    if not work:
                        return
                    body = work.pop(0)
                    wait_s = next_slot[0] - time.monotonic()
                    next_slot[0] = max(next_slot[0], time.monotonic()) + interval
                if wait_s > 0:
                    time.sleep(wait_s)
                self.deliver(body)

        pool = [threading.Thread(target=run, daemon=True) for _ in range(self.threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(self.horizon_s + 60)
        return self.report

    def start_background(self, bodies: list[bytes], **kwargs: Any) -> threading.Thread:
        thread = threading.Thread(target=self.send_all, args=(bodies,), kwargs=kwargs, daemon=True)
        thread.start()
        return thread
