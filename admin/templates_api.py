"""``/api/merchants/<m>/templates/<kind>/<channel>``: per-merchant templates (docs/api.md, Templates).

Merchant templates are untrusted code: every save is validated by the sandboxed renderer
(syntax and undefined names with line numbers, sandbox escapes, size, SMS segments, and
output bombs: anything that would build more than the sandbox's caps, see notifiers/sandbox.py)
and refused with 422 before it can reach a customer.

Every save (``PUT``, ``DELETE`` back to the default, a restore) keeps a version in the same
transaction (store/template_versions.py): who saved it (``admin`` or ``key:<id>``), when, what it
was and what changed. ``…/test-send`` sends the rendered template with sample data through the
configured channel, marked as a test, to one of the merchant's own addresses only (docs/api.md,
Templates).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, request
from redis import RedisError

from admin.auth import principal
from admin.paging import page_args
from admin.scopes import Scope, scope
from admin.services import Services, json_body, services
from admin.validation import LOCALE, Invalid
from domain.vocabulary import MERCHANT_ALERTS, Audience, Channel, NotificationKind, NotificationStatus
from ingest.errors import error_response
from notifiers.channel import ChannelError, OutgoingMessage, UncertainDeliveryError
from notifiers.context import sample_context
from notifiers.rendering import (
    NoDefaultTemplate,
    RenderError,
    TemplateSet,
    TemplateValidationError,
    default_renderer,
)
from store import merchants as merchant_store
from store import notifications as notification_store
from store import template_versions as version_store
from store import templates as template_store
from store.contacts import normalize_email, normalize_phone
from store.database import utcnow
from store.errors import NotFound
from store.merchants import Merchant
from store.template_versions import Content, TemplateKey, Version
from workers.outbox import OutboxChannel
from workers.sending import configured_channels

templates_api = Blueprint("templates_api", __name__)

BASE = "/api/merchants/<slug>/templates/<kind>/<channel>"


def _key(kind: str, channel: str) -> tuple[NotificationKind, Channel]:
    errors: dict[str, str] = {}
    try:
        k = NotificationKind(kind)
    except ValueError:
        errors["kind"] = f"unknown notification kind {kind!r}"
    try:
        c = Channel(channel)
    except ValueError:
        errors["channel"] = f"unknown channel {channel!r}; use email or sms"
    if errors:
        raise Invalid(errors)
    if k in MERCHANT_ALERTS and c is Channel.SMS:
        raise Invalid({"channel": f"{kind} is a merchant alert and is sent by email only"})
    return k, c


def _locale(merchant: Merchant) -> str:
    locale = request.args.get("locale") or merchant.default_locale or "en"
    if not LOCALE.fullmatch(locale):
        raise Invalid({"locale": "must be a locale like 'en' or 'es-MX'"})
    return str(locale)


def _merchant_locale(conn: Any, slug: str) -> tuple[Merchant, str]:
    merchant = merchant_store.require(conn, slug)
    return merchant, _locale(merchant)


def _template_key(conn: Any, slug: str, k: NotificationKind, c: Channel) -> TemplateKey:
    """Which of merchant ``slug``'s templates the request means (its locale: :func:`_locale`)."""
    merchant, locale = _merchant_locale(conn, slug)
    return TemplateKey(merchant.id, k.value, c.value, locale)


def _described(
    k: NotificationKind, c: Channel, locale: str, source: str, tset: TemplateSet | None = None
) -> dict[str, Any]:
    """The JSON of one template: its address, where it comes from and (when given) its text."""
    body: dict[str, Any] = {"kind": k.value, "channel": c.value, "locale": locale, "source": source}
    if tset is not None:
        body.update(subject=tset.subject, text=tset.text, html=tset.html)
    return body


def _template_set(body: Any, channel: Channel) -> TemplateSet:
    allowed = {"subject", "text", "html"} if channel is Channel.EMAIL else {"text"}
    if not isinstance(body, dict):
        raise Invalid({"body": "must be a JSON object"})
    errors = {k: f"not used by {channel.value} templates" for k in body if k not in allowed | {"context"}}
    for k in allowed & set(body):
        if body[k] is not None and not isinstance(body[k], str):
            errors[k] = "must be a string"
    if not body.get("text"):
        errors["text"] = "is required"
    if channel is Channel.EMAIL and not body.get("subject"):
        errors["subject"] = "is required for email"
    if errors:
        raise Invalid(errors)
    return TemplateSet(subject=body.get("subject"), text=body["text"], html=body.get("html"))


def _sample(merchant: Merchant, k: NotificationKind, locale: str) -> dict[str, Any]:
    """The sample context of ``k`` (notifiers/context.py) with the merchant's own name and support."""
    context = sample_context(k, locale)
    context["merchant"] = {
        **context["merchant"],
        "name": merchant.name,
        "support_email": merchant.support_email or context["merchant"]["support_email"],
        "support_url": merchant.support_url or context["merchant"]["support_url"],
    }
    return context


def _content(tset: TemplateSet) -> Content:
    return Content(tset.subject, tset.text, tset.html)


def _saved_by() -> str:
    """Who is saving, for the version: ``admin`` (the admin token) or ``key:<id>`` (a merchant key)."""
    holder = principal().holder
    return "admin" if holder is None else f"key:{holder.key_id}"


def _render_failed(exc: RenderError) -> tuple[Response, int]:
    return jsonify(
        {
            "error": "invalid_template",
            "message": str(exc),
            "errors": [exc.as_dict()],
            "fields": {exc.as_dict()["field"]: str(exc)},
        }
    ), 422


@templates_api.errorhandler(TemplateValidationError)
def _invalid_template(exc: TemplateValidationError) -> tuple[Response, int]:
    """A template that fails validation (save, restore, preview, test send): 422 naming each error."""
    fields = {e["field"]: (f"line {e['line']}: " if e.get("line") else "") + e["message"] for e in exc.errors}
    return jsonify(
        {"error": "invalid_template", "message": str(exc), "fields": fields, "errors": exc.errors}
    ), 422


@templates_api.put(BASE)
@scope(Scope.MERCHANT)
def put_template(slug: str, kind: str, channel: str) -> tuple[Response, int]:
    k, c = _key(kind, channel)
    tset = _template_set(json_body(), c)
    s = services()
    default_renderer().validate(k, c, tset)
    with s.database.write() as conn:
        merchant, locale = _merchant_locale(conn, slug)
        saved = template_store.save(
            s.database,
            conn,
            TemplateKey(merchant.id, k.value, c.value, locale),
            _content(tset),
            saved_by=_saved_by(),
        )
    body = {**_described(k, c, locale, "merchant", tset), "version": saved.version.version}
    return jsonify(body), 200 if saved.existed else 201


@templates_api.get(BASE)
@scope(Scope.MERCHANT)
def get_template(slug: str, kind: str, channel: str) -> Response:
    k, c = _key(kind, channel)
    with services().database.read() as conn:
        key = _template_key(conn, slug, k, c)
        stored = template_store.get(conn, key)
    if stored is not None:
        return jsonify({**_described(k, c, key.locale, "merchant"), **stored})
    try:
        used, tset = default_renderer().resolve_default(k, c, [key.locale])
    except NoDefaultTemplate as exc:
        raise NotFound(str(exc)) from None
    return jsonify(_described(k, c, used, "default", tset))


@templates_api.delete(BASE)
@scope(Scope.MERCHANT)
def delete_template(slug: str, kind: str, channel: str) -> Response:
    k, c = _key(kind, channel)
    s = services()
    with s.database.write() as conn:
        key = _template_key(conn, slug, k, c)
        saved = template_store.reset(s.database, conn, key, saved_by=_saved_by())
    version = saved.version.version if saved is not None else None
    return jsonify(
        {"deleted": saved is not None, **_described(k, c, key.locale, "default"), "version": version}
    )


@templates_api.post(BASE + "/preview")
@scope(Scope.MERCHANT)
def preview(slug: str, kind: str, channel: str) -> tuple[Response, int]:
    """Render an unsaved template (body has text/subject/html) or the current one (empty body)."""
    k, c = _key(kind, channel)
    # an empty body previews the current template; any other body must be a JSON object (a
    # malformed one is a 422, not a silent preview of the current template)
    body = request.get_json(silent=True) if request.get_data() else {}
    if not isinstance(body, dict):
        raise Invalid({"body": "must be a JSON object (or empty to preview the current template)"})
    s = services()
    with s.database.read() as conn:
        merchant, locale = _merchant_locale(conn, slug)
        stored = template_store.get(conn, TemplateKey(merchant.id, k.value, c.value, locale))
    context = _sample(merchant, k, locale)
    given = body.get("context")
    if isinstance(given, dict):
        for key, value in given.items():
            context[key] = (
                {**context[key], **value}
                if isinstance(context.get(key), dict) and isinstance(value, dict)
                else value
            )
    renderer = default_renderer()
    try:
        if body.get("text"):
            tset = _template_set(body, c)
            renderer.validate(k, c, tset)
            rendered = renderer.render(k, c, context, locales=[locale], override=tset)
        elif stored is not None:
            tset = TemplateSet(subject=stored["subject"], text=stored["text"], html=stored["html"])
            rendered = renderer.render(k, c, context, locales=[locale], override=tset)
        else:
            rendered = renderer.render(k, c, context, locales=[locale, merchant.default_locale])
    except RenderError as exc:
        return _render_failed(exc)
    return jsonify(
        {
            "kind": k.value,
            "channel": c.value,
            "locale": rendered.locale,
            "subject": rendered.subject,
            "text": rendered.text,
            "html": rendered.html,
            "segments": rendered.segments,
            "encoding": rendered.encoding,
        }
    ), 200


# ------------------------------------------------------------------------------ versions

#: ``<n>`` of ``…/versions/<n>``: a version number (whole string).
VERSION = re.compile(r"[1-9][0-9]{0,8}")


def _number(n: str) -> int:
    if not VERSION.fullmatch(n):
        raise Invalid({"version": "must be a version number (1, 2, 3 …)"})
    return int(n)


def _version(slug: str, k: NotificationKind, c: Channel, n: str) -> tuple[str, Version]:
    """Version ``n`` of the template the request names, and that template's locale (404 if none)."""
    number = _number(n)
    with services().database.read() as conn:
        merchant, locale = _merchant_locale(conn, slug)
        found = version_store.get(conn, TemplateKey(merchant.id, k.value, c.value, locale), number)
    if found is None:
        raise NotFound(
            f"no version {number} of the {k.value} {c.value} template ({locale}) of {merchant.slug!r}"
        )
    return locale, found


@templates_api.get(BASE + "/versions")
@scope(Scope.MERCHANT)
def list_versions(slug: str, kind: str, channel: str) -> Response:
    """Newest first, without content: ``{"versions": [...], "next_cursor"}``."""
    k, c = _key(kind, channel)
    page = page_args(request.args, default=50, maximum=500, decode_cursor=version_store.CURSOR.decode)
    s = services()
    with s.database.read() as conn:
        key = _template_key(conn, slug, k, c)
        found, next_cursor = version_store.page(conn, key, limit=page.limit, before=page.cursor)
    return jsonify(
        {
            **_described(k, c, key.locale, "merchant"),
            "versions": [v.to_public() for v in found],
            "next_cursor": next_cursor,
        }
    )


@templates_api.get(BASE + "/versions/<n>")
@scope(Scope.MERCHANT)
def get_version(slug: str, kind: str, channel: str, n: str) -> Response:
    k, c = _key(kind, channel)
    locale, found = _version(slug, k, c, n)
    return jsonify({**_described(k, c, locale, "merchant"), **found.to_public(with_content=True)})


@templates_api.post(BASE + "/versions/<n>/restore")
@scope(Scope.MERCHANT)
def restore_version(slug: str, kind: str, channel: str, n: str) -> tuple[Response, int]:
    """Make version ``n`` current again: a new save (so a new version); restoring a "default"
    version deletes the override. The content is validated again (the sandbox's rules may have
    tightened since it was saved)."""
    k, c = _key(kind, channel)
    _, old = _version(slug, k, c, n)
    number, content = old.version, old.content
    tset = None
    if content.text is not None:
        tset = TemplateSet(subject=content.subject, text=content.text, html=content.html)
        default_renderer().validate(k, c, tset)
    s = services()
    with s.database.write() as conn:
        key = _template_key(conn, slug, k, c)
        saved = template_store.save(s.database, conn, key, content, saved_by=_saved_by(), restored=number)
    source = "default" if content.is_default else "merchant"
    return jsonify(
        {**_described(k, c, key.locale, source, tset), "restored": number, "version": saved.version.version}
    ), 200


# ------------------------------------------------------------------------------ test sends

#: Test sends per merchant per hour (a fixed window from the first one, in Redis).
TEST_SENDS_PER_HOUR = 10
TEST_WINDOW_S = 3600
TEST_PREFIX = "[TEST] "
#: The merchant's own email addresses a test email may go to.
OWN_EMAILS = ("email_from", "reply_to", "support_email", "alert_email")


def _own_address(merchant: Merchant, c: Channel, to: Any) -> str:
    """``to``, normalized, when it is one of the merchant's own addresses; else a 422 on ``to``."""
    if c is Channel.EMAIL:
        own = [getattr(merchant, f) for f in OWN_EMAILS if getattr(merchant, f)]
        rule = "must be one of the merchant's own addresses (" + ", ".join(OWN_EMAILS) + ")"
        try:
            given = normalize_email(to)
        except ValueError:
            raise Invalid({"to": rule}) from None
        if given.casefold() not in {a.casefold() for a in own}:
            raise Invalid({"to": rule})
        return given
    if not merchant.test_phone:
        raise Invalid({"to": "set the merchant's test_phone first: a test SMS goes only to that number"})
    try:
        phone = normalize_phone(to)
    except ValueError:
        raise Invalid({"to": "must be the merchant's test_phone"}) from None
    if phone != merchant.test_phone:
        raise Invalid({"to": "must be the merchant's test_phone"})
    return phone


def _take_test_send(s: Services, merchant_id: int) -> int | None:
    """Count one test send of the merchant; seconds until the window ends when it is over the limit."""
    key = f"{s.namespace}:test-sends:{merchant_id}"
    pipe = s.redis.pipeline(transaction=True)
    pipe.set(key, 0, ex=TEST_WINDOW_S, nx=True)
    pipe.incr(key)
    pipe.ttl(key)
    _, count, ttl = pipe.execute()
    if int(count) > TEST_SENDS_PER_HOUR:
        return max(int(ttl), 1)
    return None


@templates_api.post(BASE + "/test-send")
@scope(Scope.MERCHANT)
def test_send(slug: str, kind: str, channel: str) -> tuple[Response, int] | Response:
    """Send the template, rendered with sample data, through the configured channel to one of
    the merchant's own addresses, marked as a test. ``{"to"}`` sends the current template (the
    merchant's, else the default); with ``subject``/``text``/``html`` it sends that unsaved
    template instead (validated like a save, and not saved)."""
    k, c = _key(kind, channel)
    body = json_body()
    if not isinstance(body, dict):
        raise Invalid({"body": "must be a JSON object"})
    if body.get("to") is None:
        raise Invalid({"to": "is required"})
    unsaved = {key: value for key, value in body.items() if key != "to"}
    if "context" in unsaved:
        raise Invalid({"context": "a test send uses the sample data"})
    s = services()
    with s.database.read() as conn:
        merchant, locale = _merchant_locale(conn, slug)
        stored = template_store.get(conn, TemplateKey(merchant.id, k.value, c.value, locale))
    to = _own_address(merchant, c, body["to"])
    renderer = default_renderer()
    context = _sample(merchant, k, locale)
    try:
        if unsaved:
            source = "unsaved"
            tset = _template_set(unsaved, c)
            renderer.validate(k, c, tset)
            rendered = renderer.render(k, c, context, locales=[locale], override=tset)
        elif stored is not None:
            source = "merchant"
            tset = TemplateSet(subject=stored["subject"], text=stored["text"], html=stored["html"])
            rendered = renderer.render(k, c, context, locales=[locale], override=tset)
        else:
            source = "default"
            rendered = renderer.render(k, c, context, locales=[locale, merchant.default_locale])
    except RenderError as exc:
        return _render_failed(exc)
    try:
        wait_s = _take_test_send(s, merchant.id)
    except RedisError:
        return error_response(503, "unavailable", "Redis unreachable; retry", headers={"Retry-After": "5"})
    if wait_s is not None:
        return error_response(
            429,
            "rate_limited",
            f"at most {TEST_SENDS_PER_HOUR} test sends per merchant per hour; retry in {wait_s} s",
            headers={"Retry-After": str(wait_s)},
        )
    email_channel, sms_channel = configured_channels(s.settings)
    adapter = (email_channel if c is Channel.EMAIL else sms_channel) or OutboxChannel(s.database, c.value)
    provider = "outbox" if isinstance(adapter, OutboxChannel) else adapter.name
    subject = f"{TEST_PREFIX}{rendered.subject or ''}".rstrip() if c is Channel.EMAIL else None
    text = rendered.text if c is Channel.EMAIL else TEST_PREFIX + rendered.text
    key = f"test:{merchant.slug}:{uuid.uuid4().hex}"
    message = OutgoingMessage(
        channel=c,
        to=to,
        sender=merchant.email_from if c is Channel.EMAIL else merchant.sms_from,
        subject=subject,
        text=text,
        html=rendered.html if c is Channel.EMAIL else None,
        idempotency_key=key,
        reply_to=merchant.reply_to if c is Channel.EMAIL else None,
        status_callback=(
            f"{s.settings.public_url.rstrip('/')}/webhooks/twilio/{merchant.slug}/status"
            if c is Channel.SMS
            else None
        ),
        test=True,
    )
    notification_id = _record_test_send(s, merchant, k, c, key, to, rendered.locale, message, source)
    try:
        result = adapter.send(message)
    except ChannelError as exc:
        outcome = "outcome_unknown" if isinstance(exc, UncertainDeliveryError) else exc.code
        with s.database.write() as conn:
            notification_store.update(
                conn,
                notification_id,
                status=NotificationStatus.FAILED.value,
                error=str(exc),
                error_code=(outcome or None) and str(outcome)[:32],
            )
        response = jsonify(
            {
                "error": "channel_error",
                "message": f"{provider}: {exc}",
                "channel": c.value,
                "provider": provider,
                "code": exc.code,
                "notification_id": notification_id,
            }
        )
        return response, 502
    with s.database.write() as conn:
        notification_store.record_sent(
            conn, notification_id, provider_id=result.provider_id, sent_at=utcnow()
        )
    return jsonify(
        {
            "test": True,
            "kind": k.value,
            "channel": c.value,
            "locale": rendered.locale,
            "source": source,
            "provider": provider,
            "to": notification_store.mask(to),
            "provider_id": result.provider_id,
            "notification_id": notification_id,
            "subject": subject,
        }
    ), 200


def _record_test_send(
    s: Services,
    merchant: Merchant,
    k: NotificationKind,
    c: Channel,
    key: str,
    to: str,
    locale: str,
    message: OutgoingMessage,
    source: str,
) -> int:
    """The test send's notification row, before the provider call: audience ``merchant`` (never
    counted as a customer's), no order, ``context.test_send``; already claimed (``sending_at``),
    so a crash inside the provider call ends it ``failed``/``outcome_unknown`` like any other."""
    with s.database.write() as conn:
        notification_id = notification_store.create(
            s.database,
            conn,
            notification_store.new_row(
                merchant_id=merchant.id,
                order_id=None,
                shipment_id=None,
                kind=k.value,
                channel=c.value,
                audience=Audience.MERCHANT.value,
                key=key,
                to_address=to,
                context={"test_send": True, "source": source, "by": _saved_by()},
            ),
        )
        if notification_id is None:
            raise RuntimeError(f"notification key {key!r} already exists")  # a fresh uuid: a bug
        notification_store.update(
            conn,
            notification_id,
            attempts=1,
            sending_at=utcnow(),
            locale=locale,
            subject=message.subject,
            body_text=message.text,
            body_html=message.html,
        )
    return notification_id
