"""The OpenAPI 3.1 document of parcelhook's HTTP surface, served by the admin app at
``GET /api/openapi.json``.

The routes are not written here: they come from the apps' own ``url_map`` (the admin app's, and
the receiver's blueprints registered on a bare app), so a path, method or path parameter can never
drift from the code. What is written by hand is what a url_map cannot know: each endpoint's
summary, query parameters, request body and answers (:data:`ADMIN` and :data:`RECEIVER`, keyed by
endpoint), and the answers every route gets from its declared scope (``admin/scopes.py``). An
endpoint without an entry is left out of the document, and ``tests/integration/test_openapi.py``
fails on it (and on an entry whose endpoint no longer exists); the same test runs schemathesis
against the admin app, so the schemas below are checked against what the views answer.

One document for both apps: the receiver's paths carry their own ``servers`` entry (the public
``web`` process, ``PARCELHOOK_PUBLIC_URL``) and the tag ``receiver``. The receiver does not serve
it: its public surface stays the webhooks, unsubscribe links and health, nothing else.

Prose (the order of the receiver's checks, the vocabularies' meaning) stays in docs/api.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.routing import Rule

from admin.scopes import Declaration, Scope, declaration, scope
from domain import vocabulary as v

Schema = dict[str, Any]

JSON = "application/json"
HTML = "text/html"
#: methods Flask/werkzeug add to every route (HEAD to every GET, OPTIONS to every rule)
IMPLIED_METHODS = frozenset({"HEAD", "OPTIONS"})
#: ``<converter:name>`` in a werkzeug rule
RULE_ARGUMENT = re.compile(r"<(?:[^:>]+:)?([^>]+)>")


def _enum(values: Iterable[str]) -> Schema:
    return {"type": "string", "enum": sorted(values)}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(required: Mapping[str, Schema], **extra: Any) -> Schema:
    """An object with every key of ``required`` present (more keys may follow)."""
    return {"type": "object", "required": sorted(required), "properties": dict(required), **extra}


STRING: Schema = {"type": "string"}
TEXT: Schema = _nullable(STRING)
TIME: Schema = _nullable({"type": "string", "format": "date-time"})
INTEGER: Schema = {"type": "integer"}
COUNT: Schema = {"type": "integer", "minimum": 0}
BOOLEAN: Schema = {"type": "boolean"}
ANY_OBJECT: Schema = {"type": "object"}
SLUG: Schema = {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"}
LOCALE: Schema = {"type": "string", "pattern": "^[a-z]{2,3}(-[A-Za-z]{2,4})?$"}
CURSOR: Schema = {"type": "string", "minLength": 1}
QUEUE: Schema = _enum(("events", "notifications", "maintenance"))

ERROR: Schema = _object(
    {"error": STRING, "message": STRING},
    properties={
        "error": STRING,
        "message": STRING,
        "fields": {"type": "object", "additionalProperties": STRING},
    },
)

MERCHANT_FIELDS: Schema = {
    "name": {"type": "string", "minLength": 1, "maxLength": 200},
    "email_from": TEXT,
    "reply_to": TEXT,
    "support_email": TEXT,
    "alert_email": TEXT,
    "sms_from": TEXT,
    "support_url": TEXT,
    "default_locale": LOCALE,
    "timezone": STRING,
    "sms_quiet_hours": TEXT,
    "tracking_url_template": TEXT,
    "order_ref_pattern": TEXT,
    "notify": _nullable(
        {
            "type": "object",
            "properties": {
                channel: {"type": "array", "items": _enum(k.value for k in v.NotificationKind)}
                for channel in ("email", "sms")
            },
        }
    ),
    "notify_test_events": BOOLEAN,
    "test_phone": TEXT,
}
MERCHANT: Schema = _object(
    {
        **MERCHANT_FIELDS,
        "slug": SLUG,
        "webhook_token": STRING,
        "webhook_url": STRING,
        "previous_token_valid_until": TIME,
        "hmac_secrets_configured": COUNT,
        "shippo_api_token_set": BOOLEAN,
        "shippo_paused": BOOLEAN,
        "shippo_auth_failed_at": TIME,
    }
)
MERCHANT_BODY: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **MERCHANT_FIELDS,
        "hmac_secrets": {"type": "array", "maxItems": 5, "items": {"type": "string", "minLength": 16}},
        "shippo_api_token": TEXT,
    },
}

EXCEPTION: Schema = _nullable(
    _object({"class": _enum(c.value for c in v.ExceptionClass), "action_required": BOOLEAN, "since": TIME})
)
ORDER_SUMMARY: Schema = _object(
    {
        "ref": STRING,
        "status": _enum(s.value for s in v.OrderStatus),
        "exception": _nullable(STRING),
        "registered": BOOLEAN,
        "customer": ANY_OBJECT,
        "notify": _object({"email": BOOLEAN, "sms": BOOLEAN}),
        "created_at": STRING,
        "updated_at": STRING,
    }
)
SHIPMENT: Schema = _object(
    {
        "id": INTEGER,
        "carrier": STRING,
        "tracking_number": STRING,
        "tracking_url": TEXT,
        "status": _nullable(_enum(s.value for s in v.ShipmentStatus)),
        "exception": EXCEPTION,
        "test": BOOLEAN,
        "history": {"type": "array"},
        "timeline": {"type": "array"},
    }
)
NOTIFICATION: Schema = _object(
    {
        "id": INTEGER,
        "kind": _enum(k.value for k in v.NotificationKind),
        "channel": _enum(c.value for c in v.Channel),
        "audience": _enum(a.value for a in v.Audience),
        "status": _enum(s.value for s in v.NotificationStatus),
        "to": TEXT,
        "created_at": STRING,
        "sent_at": TIME,
        "provider_id": TEXT,
        "error": TEXT,
        "error_code": TEXT,
    }
)
ORDER: Schema = {
    "allOf": [
        ORDER_SUMMARY,
        _object(
            {
                "shipments": {"type": "array", "items": SHIPMENT},
                "notifications": {"type": "array", "items": NOTIFICATION},
            }
        ),
    ]
}
CUSTOMER: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {name: TEXT for name in ("name", "email", "phone", "locale", "timezone")},
}
ORDER_BODY: Schema = {
    "type": "object",
    "properties": {
        "customer": CUSTOMER,
        "notify": {"type": "object", "properties": {"email": BOOLEAN, "sms": BOOLEAN}},
    },
}
KEY: Schema = _object(
    {
        "id": INTEGER,
        "label": TEXT,
        "prefix": STRING,
        "created_at": STRING,
        "last_used_at": TIME,
        "revoked_at": TIME,
    }
)
TEMPLATE_CONTENT: Schema = {
    "type": "object",
    "properties": {"subject": TEXT, "text": TEXT, "html": TEXT},
}
TEMPLATE: Schema = _object(
    {
        "kind": _enum(k.value for k in v.NotificationKind),
        "channel": _enum(c.value for c in v.Channel),
        "locale": LOCALE,
        "source": _enum(("merchant", "default")),
    }
)
VERSION: Schema = _object(
    {
        "version": {"type": "integer", "minimum": 1},
        "source": _enum(("merchant", "default")),
        "saved_by": STRING,
        "saved_at": STRING,
        "change": ANY_OBJECT,
    }
)
BULK_BODY: Schema = {
    "type": "object",
    "required": ["queue"],
    "properties": {
        "queue": QUEUE,
        "ids": {
            "type": "array",
            "minItems": 1,
            "maxItems": 10000,
            "items": {"type": "string", "minLength": 1},
        },
        "all": BOOLEAN,
    },
    "description": "`ids` (`ignored` in the answer counts the unknown ones), or `all: true`; not both",
}
SIGNED_OUT: Schema = _object({"signed_out": {"const": True}})


@dataclass(frozen=True)
class Answer:
    """One documented answer: a JSON body (its schema), or another media type."""

    description: str
    schema: Schema | None = None
    media: str = JSON
    headers: tuple[str, ...] = ()

    def to_openapi(self) -> Schema:
        out: Schema = {"description": self.description}
        if self.media:
            out["content"] = {self.media: {"schema": self.schema} if self.schema is not None else {}}
        if self.headers:
            out["headers"] = {name: {"schema": STRING} for name in self.headers}
        return out


def ok(schema: Schema, description: str = "done") -> Answer:
    return Answer(description, schema)


def error(description: str, *headers: str) -> Answer:
    return Answer(description, ERROR, headers=headers)


def page(description: str) -> Answer:
    return Answer(description, {"type": "string"}, HTML)


INVALID = error("invalid input: `fields` names every problem")
UNKNOWN = error("unknown merchant (or order, template, version, key)")
REDIRECT = Answer("a redirect (`Location`)", None, "", headers=("Location",))
RATE_LIMITED = error("over the allowance: retry after `Retry-After` seconds", "Retry-After")


@dataclass(frozen=True)
class Operation:
    """What the url_map cannot tell about one endpoint."""

    summary: str
    answers: Mapping[int, Answer]
    query: Mapping[str, Schema] = field(default_factory=dict)
    body: Schema | None = None
    body_media: str = JSON
    headers: Mapping[str, tuple[Schema, bool]] = field(default_factory=dict)  # name -> (schema, required)
    required_query: tuple[str, ...] = ()
    body_required: bool = True
    path: Mapping[str, Schema] = field(default_factory=dict)  # path parameters unlike PATH_PARAMETERS


def _settle_dead_letters(verb: str, counted: str) -> Operation:
    """Requeue and purge answer alike: the queue, how many were settled and (with `ids`) how
    many of them were not found."""
    return Operation(
        f"{verb} dead letters (`ids`, or `all`)",
        {
            200: ok(
                _object(
                    {"queue": QUEUE, counted: COUNT},
                    properties={"queue": QUEUE, counted: COUNT, "ignored": COUNT},
                )
            ),
            422: INVALID,
            503: error("the broker is unreachable", "Retry-After"),
        },
        body=BULK_BODY,
    )


def _limit(maximum: int, default: int) -> Schema:
    return {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}


TEMPLATE_QUERY = {"locale": LOCALE}

#: Optional query parameters of the admin app where an empty value is the same as none (the default).
EMPTY_IS_ABSENT = frozenset(
    {"status", "exception", "cursor", "queue", "outcome", "merchant", "locale", "limit"}
)
#: The merchant page's sign-in form and logout answer for any ``<slug>``: an anonymous caller
#: cannot learn which merchants exist (the page behind them is the merchant's own).
ANY_SLUG: Mapping[str, Schema] = {"slug": STRING}

#: The admin app, by endpoint (docs/api.md, *Admin API*).
ADMIN: Mapping[str, Operation] = {
    "merchants_api.list_merchants": Operation(
        "every merchant", {200: ok(_object({"merchants": {"type": "array", "items": MERCHANT}}))}
    ),
    "merchants_api.get_merchant": Operation("one merchant", {200: ok(MERCHANT), 404: UNKNOWN}),
    "merchants_api.put_merchant": Operation(
        "create (201) or update (200) a merchant; only the given fields change",
        {
            200: ok(MERCHANT, "updated"),
            201: ok(MERCHANT, "created"),
            404: UNKNOWN,
            409: error("created by a concurrent request"),
            422: INVALID,
        },
        body=MERCHANT_BODY,
    ),
    "merchants_api.rotate": Operation(
        "a new webhook token; the previous one keeps working for 24 h", {200: ok(MERCHANT), 404: UNKNOWN}
    ),
    "orders_api.put_order": Operation(
        "register (201) or update (200) an order",
        {200: ok(ORDER, "updated"), 201: ok(ORDER, "registered"), 404: UNKNOWN, 422: INVALID},
        body=ORDER_BODY,
    ),
    "orders_api.get_order": Operation(
        "one order with its shipments and notifications", {200: ok(ORDER), 404: UNKNOWN, 422: INVALID}
    ),
    "orders_api.list_orders": Operation(
        "the merchant's orders, newest first",
        {
            200: ok(
                _object(
                    {"orders": {"type": "array", "items": ORDER_SUMMARY}, "next_cursor": _nullable(STRING)}
                )
            ),
            404: UNKNOWN,
            422: INVALID,
        },
        query={
            "status": _enum(s.value for s in v.OrderStatus),
            "exception": _enum(c.value for c in v.ExceptionClass),
            "limit": _limit(500, 50),
            "cursor": CURSOR,
        },
    ),
    "shippo_routes.refresh_shipment": Operation(
        "look a shipment up at Shippo and process its Track like a webhook",
        {
            200: ok(_object({"shipment": SHIPMENT})),
            404: UNKNOWN,
            409: error("no `shippo_api_token`, or Shippo calls paused after a 401"),
            422: INVALID,
            429: RATE_LIMITED,
            502: error("Shippo failed, or its Track cannot be processed"),
        },
        body={
            "type": "object",
            "required": ["carrier", "tracking_number"],
            "properties": {
                "carrier": {"type": "string", "minLength": 1, "maxLength": 64},
                "tracking_number": {"type": "string", "minLength": 1, "maxLength": 128},
            },
        },
    ),
    "shippo_routes.register_webhooks": Operation(
        "register the merchant's webhook URL with Shippo (idempotent)",
        {
            200: ok(
                _object(
                    {
                        "webhooks": {
                            "type": "array",
                            "items": _object({"event": STRING, "url": STRING, "object_id": STRING}),
                        }
                    }
                )
            ),
            404: UNKNOWN,
            409: error("no `shippo_api_token`, or Shippo calls paused after a 401"),
            429: RATE_LIMITED,
            502: error("Shippo failed"),
        },
    ),
    "ops_api.queues": Operation(
        "queue depths and live workers",
        {
            200: ok(
                _object(
                    {
                        "queues": {"type": "array", "items": ANY_OBJECT},
                        "workers": {"type": "array", "items": ANY_OBJECT},
                    }
                )
            ),
            503: error("the broker is unreachable", "Retry-After"),
        },
    ),
    "ops_api.dead_letters": Operation(
        "dead-lettered messages",
        {
            200: ok(
                _object(
                    {
                        "dead_letters": {"type": "array", "items": ANY_OBJECT},
                        "counts": {"type": "object", "additionalProperties": COUNT},
                    }
                )
            ),
            422: INVALID,
            503: error("the broker is unreachable", "Retry-After"),
        },
        query={"queue": QUEUE, "limit": _limit(1000, 100)},
    ),
    "ops_api.requeue": _settle_dead_letters("requeue", "requeued"),
    "ops_api.purge": _settle_dead_letters("purge", "purged"),
    "ops_api.webhooks": Operation(
        "the last accepted and rejected webhook deliveries, newest first",
        {
            200: ok(_object({"deliveries": {"type": "array", "items": ANY_OBJECT}})),
            422: INVALID,
            503: error("the broker's Redis is unreachable", "Retry-After"),
        },
        query={
            # as the receiver logged it: a rejected delivery's path need not hold a valid slug
            "merchant": STRING,
            "outcome": _enum(o.value for o in v.DeliveryOutcome),
            "limit": _limit(1000, 100),
        },
    ),
    "ops_api.metrics": Operation(
        "Prometheus text format", {200: Answer("the metrics", {"type": "string"}, "text/plain")}
    ),
    "templates_api.put_template": Operation(
        "save the merchant's template (validated in the sandbox first)",
        {
            200: ok(TEMPLATE, "replaced"),
            201: ok(TEMPLATE, "created"),
            404: UNKNOWN,
            409: error("a concurrent save kept taking the version number"),
            422: error("invalid input, or a template that does not validate (`invalid_template`)"),
        },
        query=TEMPLATE_QUERY,
        body={**TEMPLATE_CONTENT, "required": ["text"], "description": "`subject` too for email"},
    ),
    "templates_api.get_template": Operation(
        "the merchant's template, or the shipped default",
        {200: ok(TEMPLATE), 404: UNKNOWN, 422: INVALID},
        query=TEMPLATE_QUERY,
    ),
    "templates_api.delete_template": Operation(
        "back to the default",
        {200: ok(_object({"deleted": BOOLEAN, "version": _nullable(INTEGER)})), 404: UNKNOWN, 422: INVALID},
        query=TEMPLATE_QUERY,
    ),
    "templates_api.preview": Operation(
        "render an unsaved template (or the current one) with sample data",
        {
            200: ok(_object({"subject": TEXT, "text": TEXT, "html": TEXT, "locale": LOCALE})),
            404: UNKNOWN,
            422: error("invalid input, or a template that does not validate or render"),
        },
        query=TEMPLATE_QUERY,
        body={**TEMPLATE_CONTENT, "properties": {**TEMPLATE_CONTENT["properties"], "context": ANY_OBJECT}},
        body_required=False,  # none: the current template
    ),
    "templates_api.list_versions": Operation(
        "the template's saved versions, newest first",
        {
            200: ok(
                _object({"versions": {"type": "array", "items": VERSION}, "next_cursor": _nullable(STRING)})
            ),
            404: UNKNOWN,
            422: INVALID,
        },
        query={**TEMPLATE_QUERY, "limit": _limit(500, 50), "cursor": CURSOR},
    ),
    "templates_api.get_version": Operation(
        "one version with its content", {200: ok(VERSION), 404: UNKNOWN, 422: INVALID}, query=TEMPLATE_QUERY
    ),
    "templates_api.restore_version": Operation(
        "make a version current again (a new version)",
        {
            200: ok(_object({"restored": INTEGER, "version": _nullable(INTEGER)})),
            404: UNKNOWN,
            409: error("a concurrent save kept taking the version number"),
            422: error("invalid input, or the version no longer validates (`invalid_template`)"),
        },
        query=TEMPLATE_QUERY,
    ),
    "templates_api.test_send": Operation(
        "send the template to one of the merchant's own addresses, marked as a test",
        {
            200: ok(
                _object(
                    {
                        "test": {"const": True},
                        "provider": _enum(("smtp", "twilio", "outbox")),
                        "notification_id": INTEGER,
                    }
                )
            ),
            404: UNKNOWN,
            422: INVALID,
            429: RATE_LIMITED,
            502: error("the channel refused or failed"),
        },
        query=TEMPLATE_QUERY,
        body={
            **TEMPLATE_CONTENT,
            "required": ["to"],
            "properties": {**TEMPLATE_CONTENT["properties"], "to": STRING},
        },
    ),
    "outbox_api.outbox": Operation(
        "messages captured because no SMTP/Twilio is configured, newest first",
        {200: ok(_object({"messages": {"type": "array", "items": ANY_OBJECT}})), 422: INVALID},
        query={"merchant": SLUG, "limit": _limit(500, 50)},
    ),
    "customers_api.erase_customer": Operation(
        "erase one customer's personal data (`email` or `phone`, exactly one)",
        {
            200: ok(
                _object(
                    {
                        "orders": COUNT,
                        "notifications": COUNT,
                        "outbox": COUNT,
                        "deliveries": COUNT,
                        "opted_out": BOOLEAN,
                    }
                )
            ),
            404: UNKNOWN,
            422: INVALID,
        },
        query={
            "email": {"type": "string", "format": "email"},
            "phone": {"type": "string", "pattern": "^\\+[1-9][0-9]{7,14}$"},
        },
    ),
    "keys_api.create_key": Operation(
        "a new merchant key, shown this once",
        {
            201: ok(
                {"allOf": [KEY, _object({"key": {"type": "string", "pattern": "^phk_[A-Za-z0-9_-]{43}$"}})]}
            ),
            404: UNKNOWN,
            422: INVALID,
        },
        body={
            "type": "object",
            "additionalProperties": False,
            "properties": {"label": {"type": "string", "minLength": 1, "maxLength": 200}},
        },
        body_required=False,  # none: a key without a label
    ),
    "keys_api.list_keys": Operation(
        "the merchant's keys, oldest first",
        {200: ok(_object({"keys": {"type": "array", "items": KEY}})), 404: UNKNOWN},
    ),
    "keys_api.revoke_key": Operation("revoke a key", {200: ok(KEY), 404: UNKNOWN}),
    "dashboard.page": Operation("the ops dashboard (HTML)", {200: page("the page"), 302: REDIRECT}),
    "dashboard.login_form": Operation("the dashboard's sign-in form", {200: page("the form")}),
    "dashboard.login": Operation(
        "sign in with the admin token: a session cookie",
        {302: REDIRECT, 401: page("the form again: wrong token")},
        body={"type": "object", "required": ["token"], "properties": {"token": STRING}},
        body_media="application/x-www-form-urlencoded",
    ),
    "dashboard.logout": Operation("end the session", {200: ok(SIGNED_OUT)}),
    "dashboard.summary": Operation(
        "what the dashboard shows beyond the ops routes",
        {
            200: ok(
                _object(
                    {
                        name: {}
                        for name in (
                            "exceptions",
                            "notifications_24h",
                            "outbox",
                            "health",
                            "merchants",
                            "generated_at",
                        )
                    }
                )
            ),
            503: error("the broker's Redis is unreachable", "Retry-After"),
        },
    ),
    "dashboard.static": Operation(
        "the pages' scripts and styles", {200: Answer("the file", None, "*/*"), 404: error("no such file")}
    ),
    "static": Operation(
        "the same files under Flask's default static route",
        {200: Answer("the file", None, "*/*"), 404: error("no such file")},
    ),
    "merchant_page.page": Operation(
        "one merchant's page (HTML)", {200: page("the page"), 302: REDIRECT, 404: UNKNOWN}
    ),
    "merchant_page.login_form": Operation(
        "the merchant page's sign-in form", {200: page("the form")}, path=ANY_SLUG
    ),
    "merchant_page.login": Operation(
        "sign in with a key of that merchant (or the admin token): a session cookie",
        {302: REDIRECT, 401: page("the form again: wrong key")},
        body={"type": "object", "required": ["key"], "properties": {"key": STRING}},
        body_media="application/x-www-form-urlencoded",
        path=ANY_SLUG,
    ),
    "merchant_page.logout": Operation("end the session", {200: ok(SIGNED_OUT)}, path=ANY_SLUG),
    "merchant_page.overview": Operation(
        "what the merchant page shows",
        {
            200: ok(
                _object(
                    {
                        "merchant": _object({"slug": SLUG, "name": STRING}),
                        "orders": {"type": "array"},
                        "notifications": {"type": "array"},
                    }
                )
            ),
            404: UNKNOWN,
            422: INVALID,
        },
        query={"limit": _limit(100, 20)},
    ),
    "openapi.document": Operation(
        "this document", {200: ok(_object({"openapi": STRING, "paths": ANY_OBJECT}))}
    ),
}

UNAVAILABLE = error("a dependency is unreachable: retry", "Retry-After")
RECEIVED = ok(
    _object(
        {
            "status": _enum(
                (v.DeliveryOutcome.QUEUED, v.DeliveryOutcome.DUPLICATE, v.DeliveryOutcome.IGNORED)
            ),
            "event_id": STRING,
        }
    )
)
TWILIO_SIGNATURE = {"X-Twilio-Signature": (STRING, True)}
TWILIO_FORM: Schema = {"type": "object", "additionalProperties": STRING}


def _twilio_callback(summary: str, status: int, answer: Answer) -> Operation:
    """Twilio's callbacks differ only in their success: a signed form, else the same errors."""
    return Operation(
        summary,
        {
            status: answer,
            403: error("`bad_signature`"),
            404: error("`unknown_merchant`"),
            503: UNAVAILABLE,
        },
        body=TWILIO_FORM,
        body_media="application/x-www-form-urlencoded",
        headers=TWILIO_SIGNATURE,
    )


#: The receiver (`web`), by endpoint (docs/api.md, *Receiver*).
RECEIVER: Mapping[str, Operation] = {
    "shippo.receive": Operation(
        "a Shippo webhook (token, optional HMAC, size, type and shape checks, then the broker)",
        {
            200: RECEIVED,
            400: error("`bad_payload`, naming the problem"),
            401: error("`bad_token`, `bad_signature` or `stale_signature`"),
            404: error("`unknown_merchant`"),
            408: error("the body did not arrive within 10 s of its headers"),
            413: error("`too_large`: over `PARCELHOOK_MAX_BODY_BYTES`"),
            415: error("`unsupported_media_type`: not JSON"),
            503: UNAVAILABLE,
        },
        query={"token": STRING},
        required_query=("token",),
        body={
            "type": "object",
            "required": ["event", "data"],
            "properties": {"event": STRING, "data": ANY_OBJECT},
        },
        headers={
            "Shippo-Auth-Signature": (
                {"type": "string", "pattern": "^t=[0-9]{1,12},v1=[0-9a-f]{64}$"},
                False,  # required when the merchant has HMAC secrets
            )
        },
    ),
    "twilio_callbacks.status": _twilio_callback(
        "Twilio's message status callback", 204, Answer("handed to the worker", None, "")
    ),
    "twilio_callbacks.inbound": _twilio_callback(
        "an inbound SMS (STOP/START/HELP)", 200, Answer("TwiML", {"type": "string"}, "text/xml")
    ),
    "unsubscribe.confirm": Operation(
        "the unsubscribe confirmation page (a GET never unsubscribes)",
        {200: page("the page"), 401: error("`bad_token`"), 404: error("`unknown_merchant`")},
    ),
    "unsubscribe.confirmed": Operation(
        "record the email opt-out (also the one-click `List-Unsubscribe-Post`)",
        {200: page("done"), 401: error("`bad_token`"), 404: error("`unknown_merchant`"), 503: UNAVAILABLE},
    ),
    "health.healthz": Operation("the process is alive", {200: ok(_object({"status": {"const": "ok"}}))}),
    "health.readyz": Operation(
        "the broker and the database answer",
        {
            200: ok(_object({"status": {"const": "ready"}, "checks": ANY_OBJECT})),
            503: ok(
                _object({"status": {"const": "unavailable"}, "checks": ANY_OBJECT}),
                "a dependency is unreachable",
            ),
        },
    ),
}

#: Path parameters by name (every app's rules use these names).
PATH_PARAMETERS: Mapping[str, Schema] = {
    "slug": SLUG,
    "ref": {"type": "string", "minLength": 1, "maxLength": 200},
    "kind": _enum(k.value for k in v.NotificationKind),
    "channel": _enum(c.value for c in v.Channel),
    "n": {"type": "string", "pattern": "^[1-9][0-9]{0,8}$"},
    "key_id": {"type": "integer", "minimum": 0},
    "filename": {"type": "string", "minLength": 1},
    "token": {"type": "string", "minLength": 1},
}


#: The receiver's paths are served by another process: the public one.
RECEIVER_SERVER: Schema = {
    "url": "{public_url}",
    "description": "the public receiver (`web`): PARCELHOOK_PUBLIC_URL",
    "variables": {"public_url": {"default": "http://127.0.0.1:8000"}},
}


def _guard_answers(declared: Declaration | None, method: str) -> dict[int, Answer]:
    """What admin/auth.py answers before the view runs, by the route's scope."""
    if declared is None or declared.scope is Scope.OPEN:
        return {}
    answers = {401: error("no or wrong bearer token (and no session), or a revoked key")}
    forbidden = []
    if declared.scope is Scope.ADMIN:
        forbidden.append("a merchant key on an admin route")
    else:
        answers[404] = UNKNOWN if declared.scope is Scope.MERCHANT else error("`?merchant=` another merchant")
    if declared.admin_fields:
        forbidden.append(f"a merchant key sending {', '.join(sorted(declared.admin_fields))}")
    if method not in ("GET", "HEAD", "OPTIONS"):
        forbidden.append("a cookie-authenticated change without the right `X-Parcelhook-CSRF`")
    if forbidden:
        answers[403] = error("; ".join(forbidden))
    return answers


def _path(rule: Rule) -> str:
    return RULE_ARGUMENT.sub(r"{\1}", rule.rule)


def _operation(
    op: Operation, rule: Rule, method: str, *, declared: Declaration | None, admin: bool
) -> Schema:
    parameters: list[Schema] = [
        {"name": name, "in": "path", "required": True, "schema": op.path.get(name, PATH_PARAMETERS[name])}
        for name in RULE_ARGUMENT.findall(rule.rule)
    ]
    parameters += [
        {
            "name": name,
            "in": "query",
            "required": name in op.required_query,
            "schema": {"anyOf": [schema, {"const": ""}]} if admin and name in EMPTY_IS_ABSENT else schema,
        }
        for name, schema in op.query.items()
    ]
    parameters += [
        {"name": name, "in": "header", "required": required, "schema": schema}
        for name, (schema, required) in op.headers.items()
    ]
    answers = {**_guard_answers(declared, method), **op.answers}
    if admin:
        answers.setdefault(503, error("the database is unreachable"))
    if op.body is not None:
        answers.setdefault(415 if op.body_media != JSON else 422, INVALID)
    out: Schema = {
        "operationId": rule.endpoint,
        "summary": op.summary,
        "tags": [rule.endpoint.split(".")[0] if admin else "receiver"],
        "responses": {str(code): answers[code].to_openapi() for code in sorted(answers)},
    }
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": op.body_required, "content": {op.body_media: {"schema": op.body}}}
    if declared is not None:
        out["x-parcelhook-scope"] = declared.scope.value
        if declared.scope is Scope.OPEN:
            out["security"] = []
    return out


def _served_rules(app: Flask) -> Iterable[Rule]:
    """The app's rules; Flask's own ``static`` only when the app has a static folder to serve."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" and not (app.static_folder and os.path.isdir(app.static_folder)):
            continue
        yield rule


def receiver_rules() -> Flask:
    """A bare app with the receiver's blueprints: its url_map, without a broker or a database."""
    from ingest.health import health
    from ingest.shippo import shippo
    from ingest.twilio import twilio_callbacks
    from ingest.unsubscribe import unsubscribe

    bare = Flask("ingest.app")
    for blueprint in (health, shippo, twilio_callbacks, unsubscribe):
        bare.register_blueprint(blueprint)
    return bare


def build(admin_app: Flask, receiver_app: Flask | None = None) -> Schema:
    """The document for ``admin_app`` and the receiver (default: :func:`receiver_rules`)."""
    paths: dict[str, Schema] = {}
    for app, table, is_admin in (
        (admin_app, ADMIN, True),
        (receiver_app or receiver_rules(), RECEIVER, False),
    ):
        for rule in _served_rules(app):
            op = table.get(rule.endpoint)
            if op is None:
                continue  # undocumented: tests/integration/test_openapi.py fails on it
            item = paths.setdefault(_path(rule), {})
            if not is_admin:
                item["servers"] = [RECEIVER_SERVER]
            for method in sorted((rule.methods or set()) - IMPLIED_METHODS):
                declared = declaration(app, rule.endpoint) if is_admin else None
                item[method.lower()] = _operation(op, rule, method, declared=declared, admin=is_admin)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "parcelhook",
            "version": "0.1.0",
            "description": (
                "Shippo webhooks in, one correct message out. The admin app's routes (internal) and, "
                "under their own `servers` entry and the tag `receiver`, the public receiver's (`web`). "
                "Prose, the receiver's pipeline and the vocabularies: docs/api.md."
            ),
        },
        "servers": [{"url": "/", "description": "the admin app (internal: never on the public port)"}],
        "security": [{"bearer": []}, {"session": []}],
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "PARCELHOOK_ADMIN_TOKEN, or a merchant key `phk_…` (its own merchant only)",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "ph_admin",
                    "description": "the sign-in forms' session; changes also need `X-Parcelhook-CSRF`",
                },
            }
        },
        "paths": dict(sorted(paths.items())),
    }


openapi = Blueprint("openapi", __name__)


@openapi.get("/api/openapi.json")
@scope(Scope.MERCHANT_FILTERED)
def document() -> ResponseReturnValue:
    """Readable with the admin token or any merchant key (the integrators it is for); not open:
    the internal app answers anonymous callers on its sign-in forms and static files only. It
    holds no secret and is the same for every caller."""
    cached: Schema | None = current_app.extensions.get("parcelhook.openapi")
    if cached is None:
        cached = current_app.extensions["parcelhook.openapi"] = build(current_app)
    return jsonify(cached)
