"""The outbox is a channel like SMTP and Twilio (``workers/outbox.py``): ``send(message)`` and
nothing else, so the sender has no branch for it. It captures the message of the notification
whose idempotency key the message carries, once; a message of no notification is refused the
way a provider refuses one."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from notifiers.channel import ChannelAdapter, OutgoingMessage, PermanentChannelError
from store import notifications as notification_store
from store.database import Database
from tests.integration.conftest import VAULT
from tests.support import rows
from tests.support.messages import NORTHWIND_EMAIL
from workers.outbox import OutboxChannel

KEY = "1001:s1:shipped:email"


MESSAGE = replace(NORTHWIND_EMAIL, idempotency_key=KEY)


def _message(**overrides: Any) -> OutgoingMessage:
    return replace(MESSAGE, **overrides)


@pytest.fixture()
def notification(database: Database) -> int:
    return rows.acme_notification(database, VAULT, key=KEY)


def test_the_outbox_is_a_channel_adapter(database: Database) -> None:
    assert isinstance(OutboxChannel(database, "email"), ChannelAdapter)


def test_a_notifications_message_is_captured_once_with_its_headers(
    database: Database, notification: int
) -> None:
    outbox = OutboxChannel(database, "email")
    first = outbox.send(_message())
    again = outbox.send(_message())  # a redelivered attempt
    assert first == again and first.provider_id.startswith("outbox-")
    with database.read() as conn:
        [captured] = notification_store.outbox_list(conn, merchant_id=None, limit=10)
    assert captured["notification_id"] == notification
    assert (captured["to"], captured["from"], captured["subject"], captured["text"], captured["html"]) == (
        "jane@example.com",
        "Northwind Goods <orders@northwind.example>",
        "Your order 1042 has shipped",
        "Hi Jane,\n\nTrack: https://tools.usps.com/go/TrackConfirmAction?tLabels=9400",
        '<p>Hi Jane,</p><p><a href="https://tools.usps.com/">Track</a></p>',
    )
    assert captured["headers"] == {
        "X-Idempotency-Key": KEY,
        "List-Unsubscribe": "<https://notify.northwind.example/u/3f9a>",
        "Reply-To": "help@northwind.example",
    }


def test_a_message_of_no_notification_is_refused_permanently(database: Database, notification: int) -> None:
    with pytest.raises(PermanentChannelError, match="no notification has key"):
        OutboxChannel(database, "email").send(_message(idempotency_key="ops-alert:no_worker:2024"))
    with database.read() as conn:
        assert notification_store.outbox_list(conn, merchant_id=None, limit=10) == []
