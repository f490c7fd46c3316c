"""A failing message is logged by actor and id, never with the webhook body it carries."""

from __future__ import annotations

import logging

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from workers.logs import install


def test_a_failing_webhook_message_is_logged_without_its_body(caplog: pytest.LogCaptureFixture) -> None:
    install()
    broker = StubBroker()
    broker.emit_after("process_boot")

    def process_event(merchant: str, event_id: str, received_at: str, body: str) -> None:
        raise RuntimeError("database down")

    actor = dramatiq.actor(broker=broker, max_retries=0)(process_event)
    message = actor.send("acme", "track:x", "2026-01-01T00:00:00+00:00", '{"name": "Jane Doe, 1 Main St"}')
    worker = dramatiq.Worker(broker, worker_timeout=50)
    with caplog.at_level(logging.ERROR, logger="dramatiq"):
        worker.start()
        broker.join(actor.queue_name, fail_fast=False)
        worker.join()
        worker.stop()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"process_event[{message.message_id}]" in text
    assert "Jane Doe" not in text
