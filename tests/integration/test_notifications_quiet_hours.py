"""SMS quiet hours: an SMS due inside the recipient's quiet hours is ``deferred`` (a delayed message
on the broker) and goes out when they end — unless a newer state superseded it by then.

The Sender's clock is moved to two seconds before the window ends (and keeps ticking), so the
real dramatiq delay is seconds, not hours; everything else is the real pipeline."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from time import monotonic
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from store.schema import notifications
from tests.fixtures.shippo import scenario
from tests.integration.conftest import System
from tests.support import notify_harness as h
from tests.support.polling import wait_until
from tests.support.smtp_server import SmtpServer
from tests.support.twilio_server import TwilioServer

pytestmark = pytest.mark.redis

LABEL, _pre, _accepted, _departed, _arrived, OUT_FOR_DELIVERY, DELIVERED = scenario("delivered")
ZONE = "America/New_York"  # the customer's; the merchant's is UTC, so the customer's must win
LEAD_S = 3.0


def _system(
    make_system: Callable[..., System], url: str, smtp: SmtpServer, twilio: TwilioServer
) -> tuple[System, dict[str, Any], datetime]:
    system = make_system(url, **h.channel_overrides(smtp, twilio))
    merchant = system.create_merchant(
        "acme", **h.merchant_profile(sms_quiet_hours="21:00-08:00", timezone="UTC")
    )
    h.register_order(system, "1001", email="jane@example.com", phone="+15551230001", timezone=ZONE)
    # 07:59:57 in New York on a March day; the window ends at 08:00 local
    base = datetime(2026, 3, 5, 8, 0, tzinfo=ZoneInfo(ZONE)).astimezone(UTC) - timedelta(seconds=LEAD_S)
    started = monotonic()
    system.runtime.sender.clock = lambda: base + timedelta(seconds=monotonic() - started)
    system.start_worker()
    return system, merchant, base + timedelta(seconds=LEAD_S)


@contextmanager
def _quiet_hours(
    make_system: Callable[..., System], url: str, *bodies: bytes
) -> Iterator[tuple[System, dict[str, Any], datetime, TwilioServer]]:
    """:func:`_system` on real channels, with ``bodies`` posted: the system, the merchant, the
    end of the quiet hours and the Twilio server."""
    with h.channels() as (smtp, twilio):
        system, merchant, window_end = _system(make_system, url, smtp, twilio)
        for body in bodies:
            system.post(merchant, body)
        yield system, merchant, window_end, twilio


def test_an_sms_due_in_quiet_hours_is_deferred_and_sent_when_they_end(
    make_system: Callable[..., System], database_url: str
) -> None:
    with _quiet_hours(make_system, database_url, LABEL, DELIVERED) as (system, _, window_end, twilio):
        wait_until(
            lambda: (
                h.sms_row(system, "delivered").status == "deferred"
                if any(r.channel == "sms" for r in h.rows(system))
                else False
            ),
            timeout=5,
            what="deferred SMS",
        )

        row = h.sms_row(system, "delivered")
        with system.database.read() as conn:
            scheduled = conn.execute(
                sa.select(notifications.c.scheduled_for).where(notifications.c.id == row.id)
            ).scalar_one()
        assert scheduled.replace(tzinfo=UTC) == window_end
        [delayed] = [m for m in h.delayed_messages(system) if m["actor_name"] == "send_notification"]
        assert delayed["args"] == [row.id]
        assert twilio.messages == []
        wait_until(
            lambda: (
                [r.status for r in h.rows(system) if r.channel == "email" and r.kind == "delivered"]
                == ["sent"]
            ),
            timeout=5,
            what="the email (quiet hours are for SMS only)",
        )
        assert h.sms_row(system, "delivered").status == "deferred"

        system.drain()  # waits for the delayed message: the window has ended by then
        assert h.sms_row(system, "delivered").status == "sent"
        [sms] = twilio.messages
        assert sms["sid"] == h.sms_row(system, "delivered").provider_id


def test_a_deferred_sms_superseded_before_the_window_ends_is_not_sent(
    make_system: Callable[..., System], sqlite_url: str
) -> None:
    with _quiet_hours(make_system, sqlite_url, LABEL, OUT_FOR_DELIVERY) as (system, merchant, _, twilio):
        wait_until(
            lambda: [r.status for r in h.rows(system) if r.channel == "sms"] == ["deferred"],
            timeout=5,
            what="deferred out_for_delivery SMS",
        )
        system.post(merchant, DELIVERED)
        wait_until(
            lambda: [r.status for r in h.rows(system) if r.channel == "sms"] == ["deferred", "deferred"],
            timeout=5,
            what="deferred delivered SMS",
        )
        system.drain()
        ofd = h.sms_row(system, "out_for_delivery")
        assert ofd.status == "suppressed" and "superseded" in (ofd.error or "")
        assert h.sms_row(system, "delivered").status == "sent"
        assert [m["body"].split(":")[1].strip()[:14] for m in twilio.messages] == ["order 1001 was"]


def test_outside_quiet_hours_an_sms_goes_out_at_once(
    make_system: Callable[..., System], sqlite_url: str
) -> None:
    with _quiet_hours(make_system, sqlite_url) as (system, merchant, _, _twilio):
        system.runtime.sender.clock = lambda: datetime(2026, 3, 5, 17, 0, tzinfo=UTC)  # noon in New York
        system.post(merchant, LABEL)
        system.post(merchant, DELIVERED)
        system.drain()
        assert h.sms_row(system, "delivered").status == "sent"
        assert h.delayed_messages(system) == []
