"""Verified callbacks on `web` (Twilio status, STOP/START/HELP, email unsubscribe) are handed to
the actor the route names (``ingest/queue.py: hand_off(actor, …)``, no look-up by name), and a
broker that cannot take them is a 503 naming the broker, so the sender retries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from domain.unsubscribe import make_token
from tests.integration.conftest import System
from tests.support import notify_harness as h
from tests.support.services import RedisServer, redis_server
from workers.queue_state import decode_message
from workers.redis_replies import raw

pytestmark = pytest.mark.redis

ADDRESS = "jane@example.com"


@pytest.fixture
def state_redis() -> Iterator[RedisServer]:
    """The receiver's own Redis (dedupe keys), apart from the broker's, so only the broker stops."""
    with redis_server() as server:
        yield server


def _callbacks(system: System) -> dict[str, Callable[[], Any]]:
    token = make_token(system.settings.unsubscribe_key, "acme", ADDRESS)
    status = {"MessageSid": "SM" + "2" * 32, "MessageStatus": "delivered", "AccountSid": h.ACCOUNT_SID}
    inbound = {
        "MessageSid": "SM" + "3" * 32,
        "AccountSid": h.ACCOUNT_SID,
        "From": "+1 (415) 555-0155",
        "To": h.SMS_FROM,
        "Body": " stop ",
        "NumMedia": "0",
    }
    return {
        "record_sms_status": lambda: h.post_twilio(system, "/webhooks/twilio/acme/status", status),
        "record_sms_keyword": lambda: h.post_twilio(system, "/webhooks/twilio/acme/inbound", inbound),
        "record_email_opt_out": lambda: system.web.post(f"/unsubscribe/acme/{token}"),
    }


def test_each_callback_reaches_its_own_actor_with_its_arguments(
    make_system: Callable[..., System], sqlite_url: str
) -> None:
    system = make_system(sqlite_url, twilio_auth_token=h.AUTH_TOKEN)
    system.create_merchant("acme")
    for post in _callbacks(system).values():
        assert post().status_code in (200, 204)
    client = redis.Redis.from_url(system.settings.broker_url)
    queued = [
        decode_message(raw(client.hget("parcelhook:events.msgs", mid)))
        for mid in client.lrange("parcelhook:events", 0, -1)
    ]
    assert sorted((m["actor_name"], m["args"]) for m in queued if m is not None) == [
        ("record_email_opt_out", ["acme", ADDRESS]),
        ("record_sms_keyword", ["acme", "+14155550155", "STOP"]),
        ("record_sms_status", ["acme", "SM" + "2" * 32, "delivered", None]),
    ]


def test_a_callback_the_broker_cannot_take_is_a_503_naming_the_broker(
    make_system: Callable[..., System], sqlite_url: str, redis_service: RedisServer, state_redis: RedisServer
) -> None:
    system = make_system(sqlite_url, twilio_auth_token=h.AUTH_TOKEN, redis_url=state_redis.url)
    system.create_merchant("acme")
    answers: dict[str, Any] = {}
    redis_service.stop()
    try:
        for actor, post in _callbacks(system).items():
            answers[actor] = post()
    finally:
        redis_service.start()
    for actor, answer in answers.items():
        assert answer.status_code == 503, (actor, answer.get_data(as_text=True))
        assert answer.get_json()["message"].startswith("broker_unreachable: "), actor
    assert redis.Redis.from_url(redis_service.url).llen("parcelhook:events") == 0
