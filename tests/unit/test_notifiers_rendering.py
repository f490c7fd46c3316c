"""Default templates, escaping, locale fallback, validation and the sandbox."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest

from domain.vocabulary import CUSTOMER_KINDS, MERCHANT_ALERTS, Channel, NotificationKind
from notifiers.context import format_date, sample_context, sparse_context
from notifiers.rendering import (
    NoDefaultTemplate,
    Renderer,
    RenderError,
    TemplateSet,
    TemplateValidationError,
    candidate_locales,
)
from notifiers.segments import sms_segments
from tests.support.rendering import render_shipped

LOCALES = ("en", "es")


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def _errors(renderer: Renderer, kind: str, channel: str, tset: TemplateSet) -> list[dict[str, object]]:
    with pytest.raises(TemplateValidationError) as info:
        renderer.validate(kind, channel, tset)
    return info.value.errors


# -- every default ---------------------------------------------------------------------------------
@pytest.fixture(
    params=[(kind, locale) for kind in CUSTOMER_KINDS for locale in LOCALES],
    ids=[f"{kind}-{locale}" for kind in CUSTOMER_KINDS for locale in LOCALES],
)
def customer_sample(request: pytest.FixtureRequest) -> tuple[NotificationKind, str, dict[str, Any]]:
    """Every customer kind in every locale: the kind, the locale and its sample context."""
    kind, locale = request.param
    return kind, locale, sample_context(kind, locale)


def test_customer_email_default_renders_with_link_and_unsubscribe(
    renderer: Renderer, customer_sample: tuple[NotificationKind, str, dict[str, Any]]
) -> None:
    kind, locale, ctx = customer_sample
    out = renderer.render(kind, Channel.EMAIL, ctx, locales=[locale])
    url = ctx["shipment"]["tracking_url"]
    assert out.locale == locale
    assert out.subject and "\n" not in out.subject and "1042" in out.subject
    assert url in out.text and url in (out.html or "")
    assert ctx["unsubscribe_url"] in out.text and ctx["unsubscribe_url"] in (out.html or "")
    assert (out.html or "").startswith("<!DOCTYPE html>")
    if ctx["exception"]["action"]:
        assert ctx["exception"]["action"] in out.text
        assert ctx["exception"]["action"] in (out.html or "")


def test_customer_sms_default_is_short_and_has_the_link(
    renderer: Renderer, customer_sample: tuple[NotificationKind, str, dict[str, Any]]
) -> None:
    kind, locale, ctx = customer_sample
    out = renderer.render(kind, Channel.SMS, ctx, locales=[locale])
    assert ctx["shipment"]["tracking_url"] in out.text
    assert out.segments is not None and out.segments <= 2
    assert out.encoding == "GSM-7"
    assert out.subject is None and out.html is None


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("channel", [Channel.EMAIL, Channel.SMS])
@pytest.mark.parametrize("kind", CUSTOMER_KINDS)
def test_defaults_cope_without_tracking_link_or_names(
    renderer: Renderer, kind: NotificationKind, channel: Channel, locale: str
) -> None:
    out = renderer.render(kind, channel, sparse_context(kind, locale), locales=[locale])
    assert "None" not in out.text
    assert "https://tools.usps.com" not in out.text


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", sorted(MERCHANT_ALERTS))
def test_merchant_alert_defaults(renderer: Renderer, kind: NotificationKind, locale: str) -> None:
    ctx = sample_context(kind, locale)
    out = renderer.render(kind, Channel.EMAIL, ctx, locales=[locale])
    assert ctx["alert"]["detail"] in out.text
    if kind is not NotificationKind.SHIPPO_AUTH_FAILED:  # about the account, not an order
        assert "1042" in (out.subject or "")
    renderer.render(kind, Channel.EMAIL, sparse_context(kind, locale), locales=[locale])
    with pytest.raises(NoDefaultTemplate):
        renderer.render(kind, Channel.SMS, ctx, locales=[locale])


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", list(NotificationKind))
def test_every_default_passes_validation(renderer: Renderer, kind: NotificationKind, locale: str) -> None:
    channels = [Channel.EMAIL] if kind in MERCHANT_ALERTS else [Channel.EMAIL, Channel.SMS]
    for channel in channels:
        renderer.validate(kind, channel, renderer.default_set(kind, channel, locale))


# -- escaping --------------------------------------------------------------------------------------
def test_customer_name_is_escaped_in_html_but_literal_in_text_and_sms(renderer: Renderer) -> None:
    ctx = sample_context("shipped")
    ctx["customer"] = {"name": "<script>alert(1)</script>", "first_name": "<script>alert(1)</script>"}
    email = renderer.render("shipped", "email", ctx, locales=["en"])
    assert "<script>" not in (email.html or "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (email.html or "")
    assert "<script>alert(1)</script>" in email.text
    sms = render_shipped(
        renderer, "sms", TemplateSet(subject=None, text="Hi {{ customer.name }}", html=None), ctx
    )
    assert sms.text == "Hi <script>alert(1)</script>"


def test_subject_is_one_line(renderer: Renderer) -> None:
    out = render_shipped(
        renderer, "email", TemplateSet(subject="Order\n{{ order.ref }}\r\nBcc: x@evil", text="t", html=None)
    )
    assert out.subject == "Order 1042 Bcc: x@evil"


# -- locales ---------------------------------------------------------------------------------------
def test_locale_fallback(renderer: Renderer) -> None:
    ctx = sample_context("shipped", "es")
    assert renderer.render("shipped", "email", ctx, locales=["es-MX", "en"]).locale == "es"
    assert renderer.render("shipped", "email", ctx, locales=["es_mx"]).locale == "es"
    assert renderer.render("shipped", "email", ctx, locales=["fr", "es"]).locale == "es"
    assert renderer.render("shipped", "email", ctx, locales=["fr", "de"]).locale == "en"
    assert renderer.render("shipped", "email", ctx, locales=[]).locale == "en"
    assert candidate_locales(["es-MX", None, "fr"]) == ["es-mx", "es", "fr", "en"]


def test_default_set_is_exact(renderer: Renderer) -> None:
    assert renderer.default_set("delivered", "sms", "es").text
    with pytest.raises(NoDefaultTemplate):
        renderer.default_set("delivered", "sms", "fr")
    assert renderer.default_locales("delivered", "email") == ["en", "es"]


def test_date_filter() -> None:
    assert format_date(date(2026, 3, 6), "en") == "March 6, 2026"
    assert format_date(date(2026, 3, 6), "es") == "6 de marzo de 2026"
    assert format_date(datetime(2026, 3, 6, 23, 0), "es-MX") == "6 de marzo de 2026"
    assert format_date("2026-03-06T10:00:00Z", "xx") == "March 6, 2026"
    assert format_date(None, "en") == ""


def test_date_filter_uses_render_locale_by_default(renderer: Renderer) -> None:
    tset = TemplateSet(
        subject=None, text="{{ shipment.eta|date }} / {{ shipment.eta|date('en') }}", html=None
    )
    out = renderer.render("shipped", "sms", sample_context("shipped"), locales=["es"], override=tset)
    assert out.text == "6 de marzo de 2026 / March 6, 2026"


# -- validation ------------------------------------------------------------------------------------
def test_syntax_error_reports_line(renderer: Renderer) -> None:
    unclosed = TemplateSet(subject="Hi", text="line one\nline two\n{% if order.ref %}\nno end", html=None)
    errors = _errors(renderer, "shipped", "email", unclosed)
    assert errors[0]["field"] == "text"
    assert errors[0]["line"] == 4
    assert "syntax" in str(errors[0]["message"])
    errors = _errors(
        renderer, "shipped", "email", TemplateSet(subject="Hi", text="a\n{{ order.ref + }}", html=None)
    )
    assert (errors[0]["field"], errors[0]["line"]) == ("text", 2)


def test_unknown_name_and_unknown_field_are_errors(renderer: Renderer) -> None:
    errors = _errors(
        renderer,
        "shipped",
        "email",
        TemplateSet(
            subject="Order {{ order.ref }}",
            text="Hi\n{{ custmer.name }}",
            html="<p>{{ shipment.trackng_url }}</p>",
        ),
    )
    fields = {(e["field"], e["line"]) for e in errors}
    assert ("text", 2) in fields and ("html", 1) in fields
    assert any("custmer" in str(e["message"]) for e in errors)
    assert any("trackng_url" in str(e["message"]) for e in errors)


def test_undefined_in_untaken_branch_is_still_caught(renderer: Renderer) -> None:
    errors = _errors(
        renderer,
        "shipped",
        "sms",
        TemplateSet(
            subject=None, text="{% if exception.class %}{{ exception.clas }}{% endif %}ok", html=None
        ),
    )
    assert "exception.clas" in str(errors[0]["message"])


def test_alert_name_only_for_merchant_alerts(renderer: Renderer) -> None:
    renderer.validate("stalled", "email", TemplateSet(subject="{{ alert.detail }}", text="x", html=None))
    errors = _errors(
        renderer, "shipped", "email", TemplateSet(subject="{{ alert.detail }}", text="x", html=None)
    )
    assert "alert" in str(errors[0]["message"])


def test_template_that_breaks_without_optional_values_is_rejected(renderer: Renderer) -> None:
    errors = _errors(
        renderer,
        "shipped",
        "sms",
        TemplateSet(subject=None, text="{{ shipment.tracking_url|length }}", html=None),
    )
    assert "optional values missing" in str(errors[0]["message"])


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ order['__class__'] }}",
        "{{ ''.__class__.mro() }}",
        "{% if false %}{{ namespace.__init__.__globals__.os }}{% endif %}",
    ],
)
def test_sandbox_escapes_are_rejected(renderer: Renderer, source: str) -> None:
    errors = _errors(renderer, "shipped", "sms", TemplateSet(subject=None, text=source, html=None))
    assert any("not allowed" in str(e["message"]) for e in errors)


def test_sandbox_escape_fails_at_render_too(renderer: Renderer) -> None:
    with pytest.raises(RenderError) as info:
        render_shipped(
            renderer, "sms", TemplateSet(subject=None, text="{{ cycler.__init__.__globals__ }}", html=None)
        )
    assert "not allowed" in info.value.message


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 10**9 }}",
        "{{ 'x'.ljust(10**9) }}",
        "{{ 'x'|center(10**9) }}",
        "{{ range(10**9)|list }}",
        "{{ (((2**64)**64)**64)**64 }}",
        "{{ (2**60)**60 * (2**60)**60 }}",
    ],
)
def test_resource_bombs_are_rejected(renderer: Renderer, source: str) -> None:
    _errors(renderer, "shipped", "email", TemplateSet(subject="s", text=source, html=None))


def test_render_timeout() -> None:
    quick = Renderer(timeout_s=0.2)
    with pytest.raises(RenderError) as info:
        render_shipped(
            quick,
            "sms",
            TemplateSet(
                subject=None,
                text="{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
                html=None,
            ),
        )
    assert "longer than" in info.value.message


def test_output_over_100_kb_is_an_error(renderer: Renderer) -> None:
    errors = _errors(
        renderer,
        "shipped",
        "email",
        TemplateSet(
            subject="s", text="{% for i in range(3000) %}{{ shipment.tracking_url }}{% endfor %}", html=None
        ),
    )
    assert "100 KB" in str(errors[0]["message"])


def test_source_over_20_kb_is_rejected(renderer: Renderer) -> None:
    errors = _errors(
        renderer, "shipped", "email", TemplateSet(subject="s", text="x" * (20 * 1024 + 1), html=None)
    )
    assert "20 KB" in str(errors[0]["message"])


def test_sms_over_ten_segments_is_rejected(renderer: Renderer) -> None:
    errors = _errors(renderer, "shipped", "sms", TemplateSet(subject=None, text="word " * 400, html=None))
    assert "segments" in str(errors[0]["message"])
    renderer.validate("shipped", "sms", TemplateSet(subject=None, text="word " * 250, html=None))


def test_email_needs_subject_and_text(renderer: Renderer) -> None:
    errors = _errors(renderer, "shipped", "email", TemplateSet(subject="  ", text="", html="<p>x</p>"))
    assert {e["field"] for e in errors} == {"subject", "text"}


def test_sms_template_has_only_text(renderer: Renderer) -> None:
    errors = _errors(renderer, "shipped", "sms", TemplateSet(subject="s", text="t", html="<p>h</p>"))
    assert {e["field"] for e in errors} == {"subject", "html"}


def test_merchant_template_may_extend_the_default_layout_but_not_read_other_files(renderer: Renderer) -> None:
    html = (
        '{% extends "email/en/_layout.html" %}{% block content %}<p>Custom {{ order.ref }}</p>{% endblock %}'
    )
    tset = TemplateSet(subject="s", text="t", html=html)
    renderer.validate("shipped", "email", tset)
    out = renderer.render("shipped", "email", sample_context("shipped"), locales=["en"], override=tset)
    assert "Custom 1042" in (out.html or "") and "<!DOCTYPE html>" in (out.html or "")
    including = TemplateSet(subject="s", text='{% include "email/en/shipped.text.txt" %}', html=None)
    errors = _errors(renderer, "shipped", "email", including)
    assert errors[0]["field"] == "text"


# -- segments --------------------------------------------------------------------------------------
def test_sms_segments() -> None:
    assert sms_segments("a" * 160) == (1, "GSM-7")
    assert sms_segments("a" * 161) == (2, "GSM-7")
    assert sms_segments("a" * 306) == (2, "GSM-7")
    assert sms_segments("a" * 307) == (3, "GSM-7")
    assert sms_segments("€" * 80) == (1, "GSM-7")  # extension chars count two septets
    assert sms_segments("€" * 81) == (2, "GSM-7")
    assert sms_segments("ñé¿¡") == (1, "GSM-7")
    assert sms_segments("á" * 70) == (1, "UCS-2")
    assert sms_segments("á" * 71) == (2, "UCS-2")
    assert sms_segments("á" * 134) == (2, "UCS-2")
    assert sms_segments("á" * 135) == (3, "UCS-2")
    assert sms_segments("") == (1, "GSM-7")
