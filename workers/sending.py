"""Sending one notification: claim → (re)check → render → provider → record.

Exactly-once, and the crash window. The idempotency key is a unique row written when the
intent was planned. Sending is three steps:

1. *claim* (transaction): lock the row; stop if it is already ``sent``/``delivered``/
   ``failed``/``suppressed``; re-check supersession, opt-outs, quiet hours; render; mark it
   ``sending`` with ``sending_at``; commit. One statement reads (and on PostgreSQL locks) the
   row with its shipment, and reads its order, the recipient's opt-out and whether the merchant
   has templates for it (``store.notifications.for_send``): a later scan of the shipment waits
   for the claim, or the claim sees it.
2. *provider call*, outside any transaction.
3. *record* (transaction): ``sent`` + provider id — or, on a definite provider refusal,
   ``queued`` again (transient, retried) or ``failed`` (permanent).

The embedded outbox channel (workers/outbox.py) is no provider: its "send" is a row in the same
database. For it the three steps are one transaction (claim → render → capture → ``sent``), so
the outbox has no crash window at all; everything below is about real providers.

A known outcome is kept until it is recorded. The provider's answer (its message id) is
written to the state Redis (workers/receipts.py, keyed by the idempotency key) *before*
step 3, and step 3 is retried in-process with a short backoff (``RECORD_BACKOFF_S``) before
the actor's own retry takes over. A redelivered message that finds the row still
``sending`` consults that receipt first: present → the row is recorded ``sent`` with that
provider id (no second send, no alert); Redis unreachable → the attempt is retried later.

Only when no receipt exists is the outcome genuinely unknown: the worker died inside the
provider call or between the provider's answer and the receipt, or the provider timed out
after the message left us (``UncertainDeliveryError``). The row is then marked ``failed``
with ``error_code="outcome_unknown"`` and the merchant is alerted; it is NOT sent again. We
chose *at most once* for that window because a customer who receives two "delivered" texts
(or two address-correction requests) loses trust, while one possibly-missing message is
visible to the merchant in the alert and in the order's notification list. Email carries a
Message-ID derived from the key, so even a manual resend is recognisable downstream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from config import Settings
from domain.policy import quiet_hours_end
from domain.shipment import ShipmentState
from domain.unsubscribe import make_token
from domain.vocabulary import Audience, Channel, NotificationStatus
from notifiers.actions import customer_action
from notifiers.channel import (
    ChannelAdapter,
    OutgoingMessage,
    PermanentChannelError,
    TransientChannelError,
    UncertainDeliveryError,
)
from notifiers.context import empty_exception
from notifiers.links import carrier_name, shipment_tracking_url
from notifiers.rendering import Renderer, RenderError, TemplateSet, candidate_locales
from store import merchant_cache
from store import notifications as notification_store
from store import templates as template_store
from store.database import Database, utcnow
from store.errors import StorageUnavailable
from store.merchants import Merchant
from store.notifications import NotificationRow, SendView
from store.orders import Order
from workers.outbox import OutboxChannel
from workers.parcels import parcels_context, superseded
from workers.receipts import Receipt, Receipts, ReceiptsUnavailable
from workers.telemetry import Telemetry

log = logging.getLogger("parcelhook.sending")

#: A claim younger than this may still be inside its provider call (actor time limit 45 s).
IN_FLIGHT_GRACE = timedelta(seconds=90)

#: Pauses between in-process attempts of a record step whose database write failed (≈ 4 s in
#: all, well inside the 45 s time limit); then the actor's retry takes over (10 s → 10 min).
RECORD_BACKOFF_S = (0.25, 0.5, 1.0, 2.0)


class SendInProgress(Exception):
    """Another attempt claimed this notification moments ago: look again later, don't send."""


class TemplateFailed(Exception):
    """The merchant's stored template failed at send time (e.g. too large): permanent, merchant alerted."""


class SendOutcome(StrEnum):
    """How one attempt of :meth:`Sender.send` ended. The row's own status words where the row
    has one, and the ``error_code`` words of the failures that alert the merchant."""

    SENT = "sent"
    DELIVERED = "delivered"  # already delivered: a late redelivery of the message
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    DEFERRED = "deferred"  # quiet hours: sent again when they end
    OUTCOME_UNKNOWN = "outcome_unknown"  # failed, and the merchant is alerted (at most once)
    TEMPLATE_ERROR = "template_error"  # failed, and the merchant is alerted
    MISSING = "missing"  # no such notification


#: The failures that alert the merchant once the claim step has recorded them.
ALERTING = frozenset({SendOutcome.OUTCOME_UNKNOWN, SendOutcome.TEMPLATE_ERROR})

FINAL = {
    NotificationStatus.SENT,
    NotificationStatus.DELIVERED,
    NotificationStatus.FAILED,
    NotificationStatus.SUPPRESSED,
}
S = NotificationStatus


@dataclass(frozen=True)
class Claim:
    notification: NotificationRow
    message: OutgoingMessage


@dataclass(frozen=True)
class Captured:
    """Sent through a transactional channel (the outbox) inside the claim's own transaction."""

    notification: NotificationRow


@dataclass(frozen=True)
class Recovered:
    """A row left ``sending`` whose provider answer was kept: recorded ``sent`` from the receipt."""

    notification: NotificationRow


class Sender:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        email: ChannelAdapter | None,
        sms: ChannelAdapter | None,
        renderer: Renderer | None = None,
        clock: Callable[[], datetime] = utcnow,
        receipts: Receipts | None = None,
        record_backoff_s: tuple[float, ...] = RECORD_BACKOFF_S,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.receipts = receipts
        self.record_backoff_s = record_backoff_s
        self.channels: dict[Channel, ChannelAdapter] = {
            Channel.EMAIL: email or OutboxChannel(db, "email"),
            Channel.SMS: sms or OutboxChannel(db, "sms"),
        }
        self.renderer = renderer or Renderer()
        self.clock = clock
        self.telemetry = telemetry  # None: no metrics (a Sender outside a worker process)

    @classmethod
    def from_settings(cls, settings: Settings, db: Database, *, telemetry: Telemetry | None = None) -> Sender:
        email, sms = configured_channels(settings)
        from workers.state import state_redis

        receipts = Receipts(state_redis(settings), settings.broker_namespace)
        return cls(settings, db, email=email, sms=sms, receipts=receipts, telemetry=telemetry)

    # ------------------------------------------------------------------ the three steps

    def send(
        self,
        notification_id: int,
        *,
        on_deferred: Callable[[int, int], None],
        on_alert: Callable[[int], Any],
        message_id: str | None = None,
    ) -> SendOutcome:
        """Returns how this attempt ended; raises TransientChannelError to retry.
        ``message_id``: the dramatiq message doing it (tells a twin from a redelivery)."""
        claim = self._claim(notification_id, on_deferred, message_id)
        if isinstance(claim, Captured):
            self._telemetry(claim.notification.channel, claim.notification.kind, S.SENT.value)
            return SendOutcome.SENT
        if isinstance(claim, Recovered):
            self._telemetry(claim.notification.channel, claim.notification.kind, S.SENT.value)
            self._forget_receipt(claim.notification.key)
            return SendOutcome.SENT
        if not isinstance(claim, Claim):
            for alert_id in self._alerts_after(notification_id, claim):
                on_alert(alert_id)
            return claim
        channel = self.channels[Channel(claim.notification.channel)]
        try:
            result = channel.send(claim.message)
        except TransientChannelError as exc:
            self._finish(notification_id, S.QUEUED, error=str(exc), error_code=exc.code, clear_sending=True)
            raise
        except PermanentChannelError as exc:
            self._finish(notification_id, S.FAILED, error=str(exc), error_code=exc.code)
            self._record_opt_out(claim.notification, exc.code)
            for alert_id in self._alert_failed(notification_id):
                on_alert(alert_id)
            return SendOutcome.FAILED
        except UncertainDeliveryError as exc:
            # it may have been delivered: at most once, like a crash inside the provider call
            self._finish(
                notification_id,
                S.FAILED,
                error=f"{exc}; not resent (at most once)",
                error_code=SendOutcome.OUTCOME_UNKNOWN,
            )
            for alert_id in self._alert_failed(notification_id):
                on_alert(alert_id)
            return SendOutcome.OUTCOME_UNKNOWN
        # the outcome is known: keep it where a retry finds it, then record it
        self._keep_receipt(claim.notification.key, result.provider_id)
        self._finish(notification_id, S.SENT, provider_id=result.provider_id, sent=True)
        self._forget_receipt(claim.notification.key)
        return SendOutcome.SENT

    def _record_opt_out(self, n: NotificationRow, code: str | None) -> None:
        """A refusal that means the recipient opted out at the provider (Twilio 21610: STOP at
        the carrier) is recorded as an opt-out, so later sends are suppressed, not refused again."""
        from workers.opt_outs import record_provider_opt_out

        with self.db.write() as conn:
            record_provider_opt_out(self.db, conn, n.merchant_id, n.channel, n.to_address, code)

    def _keep_receipt(self, key: str, provider_id: str) -> None:
        if self.receipts is None:
            return
        try:
            self.receipts.keep(key, Receipt(provider_id=provider_id, accepted_at=self.clock()))
        except ReceiptsUnavailable as exc:
            # still recorded below in the normal case; only a failure of that too is unknowable
            log.warning("provider receipt for notification key not kept (%s); recording directly", exc)

    def _forget_receipt(self, key: str) -> None:
        if self.receipts is None:
            return
        try:
            self.receipts.forget(key)
        except ReceiptsUnavailable:
            pass  # it expires on its own (RECEIPT_TTL)

    def _claim(
        self, notification_id: int, on_deferred: Callable[[int, int], None], message_id: str | None = None
    ) -> Claim | Captured | Recovered | SendOutcome:
        now = self.clock()
        with self.db.write() as conn:
            # one statement: the row (locked) with its shipment (locked), order, opt-out, templates
            view = notification_store.for_send(self.db, conn, notification_id)
            if view is None:
                return SendOutcome.MISSING
            n = view.notification
            if n.status in FINAL:
                return SendOutcome(n.status)
            if n.sending_at is not None and self.receipts is not None:
                # the provider may have answered and only the record step failed: that answer
                # was kept (raises ReceiptsUnavailable → retried later, never guessed)
                receipt = self.receipts.find(n.key)
                if receipt is not None:
                    notification_store.record_sent(
                        conn, n.id, provider_id=receipt.provider_id, sent_at=receipt.accepted_at
                    )
                    return Recovered(n)
            claimed_by = n.context.get("claimed_by")
            if (
                n.sending_at is not None
                and message_id
                and claimed_by not in (None, message_id)
                and now - n.sending_at < IN_FLIGHT_GRACE
            ):
                # a *different* message (reconciliation's twin) while the claimer may still be in
                # its provider call; the claimer's own redelivery falls through to outcome_unknown
                raise SendInProgress(f"notification {n.id} was claimed at {n.sending_at.isoformat()}")
            if n.sending_at is not None:
                notification_store.update(
                    conn,
                    n.id,
                    status=S.FAILED.value,
                    error_code=SendOutcome.OUTCOME_UNKNOWN,
                    error="a previous attempt stopped during the provider call; not resent (at most once)",
                )
                return SendOutcome.OUTCOME_UNKNOWN
            merchant = merchant_cache.for_db(self.db).by_id(conn, n.merchant_id, view.merchant_version)
            order, state = view.order, view.shipment
            reason = self._suppression(conn, view, merchant)
            if reason:
                notification_store.mark_suppressed(conn, n.id, reason)
                return SendOutcome.SUPPRESSED
            if n.channel == Channel.SMS and n.audience == Audience.CUSTOMER:
                tz = (order.customer.get("timezone") if order else None) or merchant.timezone
                resume = quiet_hours_end(now, merchant.sms_quiet_hours, tz)
                if resume is not None:
                    notification_store.update(conn, n.id, status=S.DEFERRED.value, scheduled_for=resume)
                    on_deferred(n.id, max(int((resume - now).total_seconds() * 1000), 1000))
                    return SendOutcome.DEFERRED
            try:
                message, locale = self._build(conn, n, merchant, order, state, templates=view.has_templates)
            except TemplateFailed as exc:
                notification_store.update(
                    conn, n.id, status=S.FAILED.value, error_code=SendOutcome.TEMPLATE_ERROR, error=str(exc)
                )
                return SendOutcome.TEMPLATE_ERROR
            claimed = {
                "sending_at": now,
                "attempts": n.attempts + 1,
                "locale": locale,
                "context": {**n.context, "claimed_by": message_id},
                "subject": message.subject,
                "body_text": message.text,
                "body_html": message.html,
            }
            channel = self.channels[Channel(n.channel)]
            if isinstance(channel, OutboxChannel):
                # a local channel: the capture commits with the claim and its `sent`, so there is
                # no provider call and no crash window (nothing can be half done)
                channel.capture_sent(
                    conn,
                    message,
                    notification_id=n.id,
                    merchant_id=n.merchant_id,
                    status=S.SENT.value,
                    sent_at=now,
                    error=None,
                    error_code=None,
                    **claimed,
                )
                return Captured(n)
            notification_store.update(conn, n.id, status=S.QUEUED.value, **claimed)
        return Claim(n, message)

    def _suppression(self, conn: Any, view: SendView, merchant: Merchant) -> str | None:
        n = view.notification
        if not n.to_address:
            return "no contact address"
        if n.audience == Audience.MERCHANT:
            return None
        opted_out = view.opted_out
        if opted_out is None:  # the address is stored in another form than opt-outs compare
            opted_out = notification_store.is_opted_out(conn, merchant.id, n.channel, n.to_address)
        if opted_out:
            return f"recipient opted out of {n.channel}"
        return superseded(self.db, conn, n, view.shipment)  # the shipment, and the order's parcels

    def _finish(
        self,
        notification_id: int,
        status: NotificationStatus,
        *,
        error: str | None = None,
        error_code: str | None = None,
        provider_id: str | None = None,
        sent: bool = False,
        clear_sending: bool = False,
    ) -> None:
        values: dict[str, Any] = {"status": status.value, "error": error, "error_code": error_code}
        if provider_id:
            values["provider_id"] = provider_id
        if sent:
            values["sent_at"] = self.clock()
        if clear_sending:
            values["sending_at"] = None
        n = self._record(notification_id, values)
        if n is not None:
            self._telemetry(n.channel, n.kind, status.value)

    def _record(self, notification_id: int, values: Mapping[str, Any]) -> NotificationRow | None:
        """The record step, retried in-process while the database is unavailable; the last
        failure propagates to the actor's retry (the receipt, if any, outlives it)."""
        for pause in (*self.record_backoff_s, None):
            try:
                with self.db.write() as conn:
                    return notification_store.update_returning(conn, notification_id, **values)
            except StorageUnavailable as exc:
                if pause is None:
                    raise
                log.warning(
                    "recording notification %s failed (%s); again in %.2f s",
                    notification_id,
                    type(exc).__name__,
                    pause,
                )
                time.sleep(pause)
        raise AssertionError("unreachable")

    def _telemetry(self, channel: str, kind: str, status: str) -> None:
        if self.telemetry is None:
            return
        try:
            self.telemetry.notification(channel=channel, kind=kind, status=status)
        except Exception:
            log.debug("telemetry unavailable", exc_info=True)

    # ------------------------------------------------------------------ rendering

    def _build(
        self,
        conn: Any,
        n: NotificationRow,
        merchant: Merchant,
        order: Order | None,
        state: ShipmentState | None,
        *,
        templates: bool = True,
    ) -> tuple[OutgoingMessage, str]:
        """``templates``: False when the merchant is known to store none of this kind and channel."""
        customer = dict(order.customer) if order else {}
        locales = [customer.get("locale"), merchant.default_locale, "en"]
        if n.audience == Audience.MERCHANT:
            locales = [merchant.default_locale, "en"]
        context = self.context(n, merchant, order, state, locales[0] or "en")
        context.update(parcels_context(conn, n, merchant, state))
        override = (
            template_store.find(conn, merchant.id, n.kind, n.channel, candidate_locales(locales))
            if templates
            else None
        )
        try:
            if override is not None:
                locale, stored = override
                tset = TemplateSet(subject=stored["subject"], text=stored["text"], html=stored["html"])
                rendered = self.renderer.render(n.kind, n.channel, context, locales=[locale], override=tset)
            else:
                rendered = self.renderer.render(n.kind, n.channel, context, locales=locales)
        except RenderError as exc:
            if override is None:
                raise
            # a stored merchant template that fails at send time (too large, broken by real data):
            # failed + merchant alert, never a silent switch to our default
            log.warning("merchant template %s/%s failed (%s)", n.kind, n.channel, exc)
            raise TemplateFailed(f"merchant template failed: {exc}") from exc
        if n.audience == Audience.MERCHANT and state is not None and state.test:
            # an alert about a test-mode shipment says so where the merchant looks first
            rendered = replace(rendered, subject=f"[TEST] {rendered.subject or ''}".rstrip())
        sender = merchant.email_from if n.channel == Channel.EMAIL else merchant.sms_from
        status_callback = None
        if n.channel == Channel.SMS:
            status_callback = f"{self.settings.public_url.rstrip('/')}/webhooks/twilio/{merchant.slug}/status"
        message = OutgoingMessage(
            channel=n.channel,  # type: ignore[arg-type]
            to=n.to_address or "",
            sender=sender,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            idempotency_key=n.key,
            reply_to=merchant.reply_to,
            list_unsubscribe=context.get("unsubscribe_url") if n.channel == Channel.EMAIL else None,
            status_callback=status_callback,
        )
        return message, rendered.locale

    def context(
        self,
        n: NotificationRow,
        merchant: Merchant,
        order: Order | None,
        state: ShipmentState | None,
        locale: str,
    ) -> dict[str, Any]:
        customer = dict(order.customer) if order else {}
        name = customer.get("name") or None
        exception = empty_exception()
        if state is not None and state.exception is not None:
            exc = state.exception
            exception = {
                "class": exc.cls.value,
                "detail": exc.detail or None,
                "action": customer_action(exc.cls.value, locale),
            }
        shipment = {
            "carrier": state.carrier if state else None,
            "carrier_name": carrier_name(state.carrier) if state and state.carrier else None,
            "tracking_number": state.tracking_number if state else None,
            "tracking_url": shipment_tracking_url(state, merchant.tracking_url_template) if state else None,
            "status": state.status.value if state and state.status else None,
            "eta": _as_date(state.eta) if state else None,
            "last_location": (state.last_location or None) if state else None,
        }
        unsubscribe = None
        if n.channel == Channel.EMAIL and n.audience == Audience.CUSTOMER and n.to_address:
            token = make_token(self.settings.unsubscribe_key, merchant.slug, n.to_address)
            unsubscribe = f"{self.settings.public_url.rstrip('/')}/unsubscribe/{merchant.slug}/{token}"
        context: dict[str, Any] = {
            "merchant": {
                "name": merchant.name,
                "support_email": merchant.support_email,
                "support_url": merchant.support_url,
            },
            "customer": {"name": name, "first_name": name.split()[0] if name else None},
            "order": {"ref": order.ref if order else None},
            "shipment": shipment,
            "exception": exception,
            "unsubscribe_url": unsubscribe,
        }
        if n.audience == Audience.MERCHANT:
            alert = dict(n.context.get("alert") or {})
            alert.setdefault("kind", n.kind)
            alert.setdefault("order_ref", order.ref if order else None)
            alert.setdefault("detail", exception.get("detail") or "")
            alert.setdefault("error", None)
            alert.setdefault("channel", None)
            context["alert"] = alert
        return context

    # ------------------------------------------------------------------ failure alerts

    def give_up(self, notification_id: int, retry_info: Mapping[str, Any]) -> tuple[int, ...]:
        """Retries exhausted (transient errors all the way): ``failed`` + merchant alert — unless
        the provider's answer was kept and only recording it kept failing: then ``sent``."""
        with self.db.write() as conn:
            n = notification_store.get(conn, notification_id, lock=self.db)
            if n is None or n.status in FINAL:
                return ()
            receipt = self.receipts.find(n.key) if self.receipts is not None and n.sending_at else None
            if receipt is not None:
                notification_store.record_sent(
                    conn, n.id, provider_id=receipt.provider_id, sent_at=receipt.accepted_at
                )
            else:
                notification_store.update(
                    conn,
                    n.id,
                    status=S.FAILED.value,
                    sending_at=None,
                    error=f"gave up after {retry_info.get('retries', '?')} retries: {n.error or 'transient errors'}",
                )
        if receipt is not None:
            self._telemetry(n.channel, n.kind, S.SENT.value)
            self._forget_receipt(n.key)
            return ()
        self._telemetry(n.channel, n.kind, S.FAILED.value)
        return self._alert_failed(notification_id)

    def _alerts_after(self, notification_id: int, outcome: SendOutcome) -> tuple[int, ...]:
        return self._alert_failed(notification_id) if outcome in ALERTING else ()

    def _alert_failed(self, notification_id: int) -> tuple[int, ...]:
        from workers.intents import alert_failed

        with self.db.write() as conn:
            n = notification_store.get(conn, notification_id)
            if n is None:
                return ()
            return alert_failed(self.db, conn, n, at=self.clock())


def configured_channels(settings: Settings) -> tuple[ChannelAdapter | None, ChannelAdapter | None]:
    """The (email, sms) provider channels ``settings`` configure; None: that channel is the outbox.
    Also what a merchant's test send uses (admin/templates_api.py)."""
    email: ChannelAdapter | None = None
    sms: ChannelAdapter | None = None
    if settings.smtp_url:
        from notifiers.smtp import SmtpChannel

        email = SmtpChannel.from_url(settings.smtp_url)
    if settings.twilio_enabled:
        from notifiers.sms import TwilioSmsChannel

        sms = TwilioSmsChannel(
            settings.twilio_account_sid or "",
            settings.twilio_auth_token or "",
            api_url=settings.twilio_api_url,
        )
    return email, sms


def _as_date(value: datetime | None) -> date | None:
    return value.date() if value else None
