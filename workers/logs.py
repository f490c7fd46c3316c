"""Worker logs: no customer data, and one quiet line per expected retry.

**No customer data.** dramatiq logs messages as ``actor(args…)`` — for ``process_event`` that
is the raw webhook body (names, addresses, emails) — from loggers named per class *and per
instance* (``dramatiq.worker.ConsumerThread(events)`` logs ``Failed to
post_process_message(…)`` when Redis drops during an ack). :class:`RedactMessages` therefore
sits on every handler of the root logger and on every ``dramatiq.*`` logger that exists when
a worker has booted, and it works on the *rendered* record:

- a message (``Message`` or its proxy) among the arguments becomes ``actor[message id]``,
  which is enough to find it on the dashboard or with ``parcelhook dlq list``;
- the text (message and formatted traceback) loses every string argument of those messages
  and of the message the thread is processing (an exception may quote a body), and every
  email address and E.164 phone number.

**Quiet retries.** A transient failure (SMTP 451, Twilio 500, a database blip) is expected
and retried; dramatiq's worker thread nevertheless logs each one at ERROR with a full
traceback. :class:`RetryLogging` (a middleware running after ``Retries`` has decided) logs
one WARNING line per retry — actor, message id, attempt n/max, exception class and a short
scrubbed reason — and an ERROR with the traceback only when the message is given up (dead
letter / ``on_retry_exhausted``). The worker thread's own ERROR is dropped only for messages
this middleware is watching, so a broker without it still logs every failure.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from workers.middleware import OutcomeMiddleware

log = logging.getLogger("parcelhook.workers.retries")

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+[1-9]\d{6,14}")
_MIN_SECRET = 6  # shorter message arguments (ids, slugs) are not worth cutting
_FORMATTER = logging.Formatter()

#: dramatiq's worker-thread record for an unhandled exception (dramatiq/worker.py).
_UNHANDLED = "Failed to process message %s with unhandled exception."


def _is_message(value: object) -> bool:
    return hasattr(value, "actor_name") and hasattr(value, "message_id") and hasattr(value, "args")


def _message_ids(record: logging.LogRecord) -> tuple[str, ...]:
    args: tuple[Any, ...] = record.args if isinstance(record.args, tuple) else ()
    return tuple(str(v.message_id) for v in args if _is_message(v))


def _label(message: Any) -> str:
    return f"{message.actor_name}[{message.message_id}]"


def _strings(message: Any) -> list[str]:
    values = [*getattr(message, "args", ()), *dict(getattr(message, "kwargs", None) or {}).values()]
    return [v for v in values if isinstance(v, str) and len(v) >= _MIN_SECRET]


#: ``repr(Message)`` (a dataclass repr, e.g. inside an exception's text): kept as ``actor[id]``
_MESSAGE_REPR = re.compile(
    r"Message\(queue_name='[^']*', actor_name='([^']*)', .*?, message_id='([^']*)', "
    r"message_timestamp=\d+\)",
    re.DOTALL,
)


class _InFlight:
    """String arguments of the messages this process holds (from processing until the ack or
    nack succeeds): any record, from any thread, loses them — a ConsumerThread retrying an
    ack during a Redis outage has no current message, an exception may quote a body."""

    LIMIT = 1024  # messages whose ack never comes (a stopped worker) age out

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: OrderedDict[str, list[str]] = OrderedDict()

    def add(self, message: Any) -> None:
        strings = _strings(message)
        with self._lock:
            self._held[message.message_id] = strings
            while len(self._held) > self.LIMIT:
                self._held.popitem(last=False)

    def discard(self, message_id: str) -> None:
        with self._lock:
            self._held.pop(message_id, None)

    def strings(self) -> list[str]:
        with self._lock:
            return [s for strings in self._held.values() for s in strings]


in_flight = _InFlight()


def scrub(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """``text`` without message reprs, the given strings (raw or as ``repr`` shows them), the
    strings of messages in flight, email addresses or phone numbers."""
    text = _MESSAGE_REPR.sub(lambda m: f"{m.group(1)}[{m.group(2)}]", text)
    for secret in sorted({*secrets, *in_flight.strings()}, key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
        quoted = repr(secret)[1:-1]
        if quoted != secret:
            text = text.replace(quoted, "[redacted]")
    return _PHONE.sub("[phone]", _EMAIL.sub("[email]", text))


class RedactMessages(logging.Filter):
    """Render the record with messages as ``actor[id]`` and without customer data."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "parcelhook_redacted", False):
            return True
        record.parcelhook_redacted = True
        record.parcelhook_format = record.msg  # what QuietRetries recognises, whatever the filter order
        record.parcelhook_message_ids = _message_ids(record)
        secrets: list[str] = []
        current = CurrentMessage.get_current_message()
        if current is not None:
            secrets += _strings(current)
        args = record.args
        if isinstance(args, tuple):
            for value in args:
                if _is_message(value):
                    secrets += _strings(value)
            args = tuple(_label(v) if _is_message(v) else v for v in args)
        elif isinstance(args, dict) and _is_message(args):
            secrets += _strings(args)
            args = (_label(args),)
        msg = record.msg
        if _is_message(msg):
            secrets += _strings(msg)
            msg = _label(msg)
        try:
            text = str(msg) % args if args else str(msg)
        except Exception:
            text = f"{msg} [arguments withheld: they did not fit the format]"
        record.msg, record.args = scrub(text, secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info, secrets)
        return True


class _Watched(threading.local):
    message_id: str | None = None


_watched = _Watched()


class QuietRetries(logging.Filter):
    """Drop dramatiq's per-failure ERROR for a message :class:`RetryLogging` is logging itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "parcelhook_format", record.msg) != _UNHANDLED or _watched.message_id is None:
            return True
        ids = getattr(record, "parcelhook_message_ids", None)
        return _watched.message_id not in (ids if ids is not None else _message_ids(record))


def safe_reason(exc: BaseException, message: Any = None) -> str:
    """``ExceptionClass [code]: first line`` (at most 160 characters), without customer data."""
    code = getattr(exc, "code", None)
    head = type(exc).__name__ + (f" [{code}]" if isinstance(code, str | int) and code != "" else "")
    first = (str(exc).strip().splitlines() or [""])[0]
    if len(first) > 160:
        first = first[:157] + "..."
    first = scrub(first, _strings(message) if message is not None else [])
    return f"{head}: {first}" if first else head


class RetryLogging(OutcomeMiddleware):
    """One WARNING per retry; ERROR + traceback only when a message is given up.

    Add it *before* ``Retries``: ``after_*`` hooks run in reverse order, so it then sees the
    decision ``Retries`` made (``message.failed``, ``options["retries"]``)."""

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        _watched.message_id = message.message_id
        in_flight.add(message)

    def after_ack(self, broker: dramatiq.Broker, message: Any) -> None:
        in_flight.discard(message.message_id)

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        in_flight.discard(message.message_id)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        _watched.message_id = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        install()  # the consumer threads' loggers exist now; so do handlers configured late

    def after_outcome(self, broker: dramatiq.Broker, message: Any, exception: BaseException | None) -> None:
        _watched.message_id = None
        if exception is None:
            return
        actor = broker.get_actor(message.actor_name)
        throws = message.options.get("throws") or actor.options.get("throws")
        if throws and isinstance(exception, throws):
            return  # permanent by declaration: dramatiq logs it at INFO, and it is not retried
        attempts = int(message.options.get("retries", 0))
        max_retries = message.options.get("max_retries", actor.options.get("max_retries"))
        total = f"{int(max_retries) + 1}" if max_retries is not None else "?"
        reason = safe_reason(exception, message)
        if message.failed:
            log.error(
                "%s gave up after attempt %d/%s: %s",
                _label(message),
                attempts,
                total,
                reason,
                exc_info=(type(exception), exception, exception.__traceback__),
            )
        else:
            log.warning("%s attempt %d/%s failed, will retry: %s", _label(message), attempts, total, reason)


_redactor = RedactMessages()
_quiet = QuietRetries()


def install() -> None:
    """Redact on every root handler and every existing ``dramatiq.*`` logger (idempotent)."""
    loggers = [log, logging.getLogger("dramatiq"), logging.getLogger("dramatiq.worker.WorkerThread")]
    loggers += [
        logger
        for name, logger in list(logging.root.manager.loggerDict.items())
        if name.startswith("dramatiq.") and isinstance(logger, logging.Logger)
    ]
    for filterer in [*loggers, *logging.getLogger().handlers]:
        if not any(isinstance(f, RedactMessages) for f in filterer.filters):
            filterer.addFilter(_redactor)
    worker_thread = logging.getLogger("dramatiq.worker.WorkerThread")
    if not any(isinstance(f, QuietRetries) for f in worker_thread.filters):
        worker_thread.addFilter(_quiet)
