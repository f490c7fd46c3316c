"""``/api/merchants/<m>/templates/<kind>/<channel>``: per-merchant templates (docs/api.md, Templates).

Merchant templates are untrusted code: every save is validated by the sandboxed renderer
(syntax and undefined names with line numbers, sandbox escapes, size, SMS segments, and
output bombs: anything that would build more than the sandbox's caps, see notifiers/sandbox.py)
and refused with 422 before it can reach a customer.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from admin.services import json_body, services
from admin.validation import LOCALE, Invalid
from domain.vocabulary import MERCHANT_ALERTS, Channel, NotificationKind
from notifiers.context import sample_context
from notifiers.rendering import (
    NoDefaultTemplate,
    RenderError,
    TemplateSet,
    TemplateValidationError,
    default_renderer,
)
from store import merchants as merchant_store
from store import templates as template_store
from store.merchants import Merchant

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


def _invalid_template(exc: TemplateValidationError) -> tuple[Response, int]:
    fields = {e["field"]: (f"line {e['line']}: " if e.get("line") else "") + e["message"] for e in exc.errors}
    return jsonify(
        {"error": "invalid_template", "message": str(exc), "fields": fields, "errors": exc.errors}
    ), 422


@templates_api.put(BASE)
def put_template(slug: str, kind: str, channel: str) -> tuple[Response, int]:
    k, c = _key(kind, channel)
    tset = _template_set(json_body(), c)
    s = services()
    try:
        default_renderer().validate(k, c, tset)
    except TemplateValidationError as exc:
        return _invalid_template(exc)
    with s.database.write() as conn:
        merchant, locale = _merchant_locale(conn, slug)
        created = template_store.put(
            s.database, conn, merchant.id, k.value, c.value, locale, tset.subject, tset.text, tset.html
        )
    return jsonify(_described(k, c, locale, "merchant", tset)), 201 if created else 200


@templates_api.get(BASE)
def get_template(slug: str, kind: str, channel: str) -> Response:
    k, c = _key(kind, channel)
    s = services()
    with s.database.read() as conn:
        merchant, locale = _merchant_locale(conn, slug)
        stored = template_store.get(conn, merchant.id, k.value, c.value, locale)
    if stored is not None:
        return jsonify({**_described(k, c, locale, "merchant"), **stored})
    try:
        used, tset = default_renderer().resolve_default(k, c, [locale])
    except NoDefaultTemplate as exc:
        from store.errors import NotFound

        raise NotFound(str(exc)) from None
    return jsonify(_described(k, c, used, "default", tset))


@templates_api.delete(BASE)
def delete_template(slug: str, kind: str, channel: str) -> Response:
    k, c = _key(kind, channel)
    s = services()
    with s.database.write() as conn:
        merchant, locale = _merchant_locale(conn, slug)
        deleted = template_store.delete(conn, merchant.id, k.value, c.value, locale)
    return jsonify({"deleted": deleted, **_described(k, c, locale, "default")})


@templates_api.post(BASE + "/preview")
def preview(slug: str, kind: str, channel: str) -> tuple[Response, int]:
    """Render an unsaved template (body has text/subject/html) or the current one (empty body)."""
    k, c = _key(kind, channel)
    body = request.get_json(silent=True) or {}
    if not isinstance(body, dict):
        raise Invalid({"body": "must be a JSON object (or empty to preview the current template)"})
    s = services()
    with s.database.read() as conn:
        merchant, locale = _merchant_locale(conn, slug)
        stored = template_store.get(conn, merchant.id, k.value, c.value, locale)
    context = sample_context(k, locale)
    context["merchant"] = {
        **context["merchant"],
        "name": merchant.name,
        "support_email": merchant.support_email or context["merchant"]["support_email"],
        "support_url": merchant.support_url or context["merchant"]["support_url"],
    }
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
    except TemplateValidationError as exc:
        return _invalid_template(exc)
    except RenderError as exc:
        return jsonify(
            {
                "error": "invalid_template",
                "message": str(exc),
                "errors": [exc.as_dict()],
                "fields": {exc.as_dict()["field"]: str(exc)},
            }
        ), 422
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
