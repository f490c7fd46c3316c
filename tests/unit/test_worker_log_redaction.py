"""Whatever logger speaks (they are named per class and per instance), a message it
logs shows up as ``actor[message id]``: neither the rendered line nor the traceback carries
the webhook body or an email address from it."""

from __future__ import annotations

import io
import json
import logging

import pytest
from dramatiq import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.logs import RedactMessages, RetryLogging

LOGGERS = st.sampled_from(
    [
        "dramatiq.worker.ConsumerThread(events)",
        "dramatiq.worker.ConsumerThread(notifications.DQ)",
        "dramatiq.worker.WorkerThread",
        "dramatiq.broker.RedisBroker",
        "dramatiq.broker.RecoveringRedisBroker",
        "dramatiq.middleware.retries.Retries",
        "dramatiq.middleware.time_limit.TimeLimit",
        "parcelhook.anything",
    ]
)
LOCAL = st.from_regex(r"[a-z][a-z0-9.]{3,20}", fullmatch=True)
NOTES = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=4, max_size=60).map(
    lambda text: f"<<{text}>>"
)  # free text a customer typed, marked so it cannot match the log's own words


def _render(logger_name: str, emit: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    handler.addFilter(RedactMessages())  # on the handler: every logger that reaches it
    logger = logging.getLogger(logger_name)
    with pytest.MonkeyPatch.context() as patch:  # not the fixture: hypothesis runs many examples per test
        patch.setattr(logger, "propagate", False)
        logger.addHandler(handler)
        try:
            emit(logger)  # type: ignore[operator]
        finally:
            logger.removeHandler(handler)
    return stream.getvalue()


@settings(max_examples=100, deadline=None)
@given(name=LOGGERS, local=LOCAL, note=NOTES)
def test_no_logger_prints_a_message_body_or_its_traceback(name: str, local: str, note: str) -> None:
    email = f"{local}@example.org"
    body = json.dumps({"event": "track_updated", "data": {"metadata": f"Order 1 {email}", "note": note}})
    message: Message[None] = Message(
        queue_name="events",
        actor_name="process_event",
        args=("acme", "track:1", "t", body),
        kwargs={},
        options={},
    )

    def emit(logger: logging.Logger) -> None:
        logger.warning("Failed to post_process_message(%s) due to a connection error: %s", message, "refused")
        logger.info("Received message %r", message)
        try:
            raise ValueError(f"could not handle {message} / {message!r} / {body}")
        except ValueError:
            logger.exception("Unhandled error during post_process_message(%s).", message)
            # a record that does not name the message: its text is known while it is in flight
            logger.critical("Unexpected failure in after_process_message of %r.", object(), exc_info=True)

    watcher = RetryLogging()
    watcher.before_process_message(None, message)  # type: ignore[arg-type]
    try:
        output = _render(name, emit)
    finally:
        watcher.after_ack(None, message)  # type: ignore[arg-type]
    assert f"process_event[{message.message_id}]" in output
    assert output.count("Traceback (most recent call last)") == 2
    assert email not in output and local not in output.replace("[email]", "")
    assert body not in output and json.dumps(note)[1:-1] not in output
