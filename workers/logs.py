"""Keep customer data out of worker logs.

dramatiq logs a failing message as ``actor(args…)`` — for ``process_event`` that is the raw
webhook body (names, addresses). This filter rewrites such arguments to ``actor[message id]``,
which is enough to find the message in the dashboard or ``parcelhook dlq list``.
"""

from __future__ import annotations

import logging

DRAMATIQ_LOGGERS = (
    "dramatiq.worker.Worker",
    "dramatiq.worker.WorkerThread",
    "dramatiq.worker._WorkerMiddleware",
    "dramatiq.middleware.retries.Retries",
    "dramatiq.middleware.time_limit.TimeLimit",
    "dramatiq.middleware.age_limit.AgeLimit",
    "dramatiq.broker.Broker",
)


class RedactMessages(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(a) for a in record.args)
        return True


def _redact(value: object) -> object:
    if hasattr(value, "actor_name") and hasattr(value, "message_id"):
        return f"{value.actor_name}[{value.message_id}]"
    return value


def install() -> None:
    redactor = RedactMessages()
    for name in DRAMATIQ_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactMessages) for f in logger.filters):
            logger.addFilter(redactor)
