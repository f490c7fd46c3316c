"""Every default template reads right when values are unknown: no "None", no empty links, no
label with nothing after it, no " ." left where a phrase was dropped — in both locales, both
channels, customer kinds and merchant alerts alike."""

from __future__ import annotations

import re
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.vocabulary import MERCHANT_ALERTS, Channel, NotificationKind
from notifiers.context import sample_context
from notifiers.rendering import DEFAULT_TEMPLATES_DIR, Rendered, Renderer

Field = tuple[str | None, str]  # (object, field); object None = a top-level name

#: What the sender may leave unknown (None) for any notification. Written out here rather than
#: taken from notifiers.context so that a field forgotten there is still exercised here.
OPTIONAL: tuple[Field, ...] = (
    ("merchant", "support_email"),
    ("merchant", "support_url"),
    ("customer", "name"),
    ("customer", "first_name"),
    ("shipment", "carrier"),
    ("shipment", "carrier_name"),
    ("shipment", "tracking_number"),
    ("shipment", "tracking_url"),
    ("shipment", "eta"),
    ("shipment", "last_location"),
    ("shipment", "status"),
    ("exception", "class"),
    ("exception", "detail"),
    ("exception", "action"),
    (None, "unsubscribe_url"),
)
#: Merchant alerts may also come without an order (a label for an unregistered order) and with
#: any alert detail missing. Customer notifications always have an order: the customer is its.
ALERT_OPTIONAL: tuple[Field, ...] = OPTIONAL + (
    ("order", "ref"),
    ("alert", "detail"),
    ("alert", "error"),
    ("alert", "channel"),
    ("alert", "order_ref"),
)


def _default_templates() -> list[tuple[NotificationKind, Channel, str]]:
    """Every (kind, channel, locale) shipped in templates/, found on disk (partials excluded)."""
    found = []
    for path in sorted(Path(DEFAULT_TEMPLATES_DIR).glob("*/*/*.text.txt")):
        if path.name.startswith("_"):
            continue
        channel, locale = path.parent.parent.name, path.parent.name
        found.append((NotificationKind(path.name.removesuffix(".text.txt")), Channel(channel), locale))
    return found


TEMPLATES = _default_templates()
IDS = [f"{c.value}-{loc}-{k.value}" for k, c, loc in TEMPLATES]


def _optional(kind: NotificationKind) -> tuple[Field, ...]:
    return ALERT_OPTIONAL if kind in MERCHANT_ALERTS else OPTIONAL


def _context(kind: NotificationKind, locale: str, missing: dict[Field, Any]) -> dict[str, Any]:
    ctx = sample_context(kind, locale)
    ctx = {k: dict(v) if isinstance(v, dict) else v for k, v in ctx.items()}
    ctx["shipment"]["eta"] = date(2026, 3, 6)  # sample has none for "delivered": give every field a value
    for (obj, field), value in missing.items():
        if obj is None:
            ctx[field] = value
        else:
            ctx[obj][field] = value
    return ctx


# ------------------------------------------------------------------------------------ what "reads right" means

_WORDS = re.compile(r"\b(None|null|undefined|nan|NaN)\b")
# a phrase dropped but its punctuation or spacing left behind
_ARTEFACTS = re.compile(r" [.,;:!?)]|\( |\(\)|\.\.|,\.|:\.|:,|,,|  |\[\]|\bwith\.|\bby\.|\bcon\.|\bde\.")
_GREETING = re.compile(r"Hola(?: [^:\n]+)?:")  # Spanish letters open with "Hola Ana:" / "Hola:"
_EMPTY_LINK = re.compile(r"""href=(["'])\s*(?:mailto:|https?://)?\s*\1""")
_EMPTY_ELEMENT = re.compile(
    r"<(p|a|strong|li|span|h\d)\b[^>]*>\s*</\1>"
    r"|<td\b[^>]*>[^<]*\S[^<]*</td>\s*<td\b[^>]*>\s*</td>"
)  # a label cell, no value


class _Visible(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _visible_text(html: str) -> str:
    parser = _Visible()
    parser.feed(html)
    return re.sub(r"\s+", " ", "".join(parser.parts)).strip()


def _line_problems(where: str, text: str) -> list[str]:
    problems = [
        f"{where}: {m.group(0)!r} in {line!r}"
        for line in text.splitlines()
        for m in [_WORDS.search(line) or _ARTEFACTS.search(line)]
        if m
    ]
    for line in text.splitlines():
        if line.rstrip().endswith(":") and not _GREETING.fullmatch(line.strip()):
            problems.append(f"{where}: a label with nothing after it: {line!r}")
    if re.search(r"\b(Track|Seguimiento|Track your parcel|Sigue tu paquete):\s*(?:$|\.)", text, re.M):
        problems.append(f"{where}: a tracking line without a link")
    return problems


def problems(out: Rendered) -> list[str]:
    found: list[str] = []
    if out.subject is not None:
        found += _line_problems("subject", out.subject)
        if not out.subject.strip():
            found.append("subject: empty")
    found += _line_problems("text", out.text)
    if out.html is not None:
        found += [f"html: {m.group(0)!r}" for m in _EMPTY_LINK.finditer(out.html)]
        found += [f"html: empty element {m.group(0)!r}" for m in _EMPTY_ELEMENT.finditer(out.html)]
        found += [f"html: {m.group(0)!r}" for m in _WORDS.finditer(out.html)]
        found += _line_problems("html text", _visible_text(out.html))
    return found


_RENDERER = Renderer()


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return _RENDERER


def _render(
    renderer: Renderer, kind: NotificationKind, channel: Channel, locale: str, missing: dict[Field, Any]
) -> Rendered:
    return renderer.render(kind, channel, _context(kind, locale, missing), locales=[locale])


# ------------------------------------------------------------------------------------ tests


def test_the_defaults_cover_every_kind_channel_and_locale() -> None:
    customer = [k for k in NotificationKind if k not in MERCHANT_ALERTS]
    expected = {(k, Channel.EMAIL, loc) for k in NotificationKind for loc in ("en", "es")}
    expected |= {(k, Channel.SMS, loc) for k in customer for loc in ("en", "es")}
    assert set(TEMPLATES) == expected


@pytest.mark.parametrize(("kind", "channel", "locale"), TEMPLATES, ids=IDS)
def test_with_every_value_known_the_template_reads_right(
    renderer: Renderer, kind: NotificationKind, channel: Channel, locale: str
) -> None:
    assert problems(_render(renderer, kind, channel, locale, {})) == []


@pytest.mark.parametrize("empty", [None, ""], ids=["none", "empty-string"])
@pytest.mark.parametrize(("kind", "channel", "locale"), TEMPLATES, ids=IDS)
def test_with_every_optional_value_missing_the_template_reads_right(
    renderer: Renderer, kind: NotificationKind, channel: Channel, locale: str, empty: str | None
) -> None:
    out = _render(renderer, kind, channel, locale, dict.fromkeys(_optional(kind), empty))
    assert problems(out) == []


@pytest.mark.parametrize(("kind", "channel", "locale"), TEMPLATES, ids=IDS)
def test_with_each_optional_value_missing_alone_the_template_reads_right(
    renderer: Renderer, kind: NotificationKind, channel: Channel, locale: str
) -> None:
    failures = {
        f"{obj}.{field}": found
        for obj, field in _optional(kind)
        if (found := problems(_render(renderer, kind, channel, locale, {(obj, field): None})))
    }
    assert failures == {}


@st.composite
def cases(draw: st.DrawFn) -> tuple[NotificationKind, Channel, str, dict[Field, Any]]:
    kind, channel, locale = draw(st.sampled_from(TEMPLATES))
    fields = draw(st.sets(st.sampled_from(_optional(kind))))
    return kind, channel, locale, {f: draw(st.sampled_from([None, ""])) for f in fields}


@settings(max_examples=200, deadline=None)
@given(cases())
def test_with_any_subset_of_values_missing_the_template_reads_right(
    case: tuple[NotificationKind, Channel, str, dict[Field, Any]],
) -> None:
    kind, channel, locale, missing = case
    out = _render(_RENDERER, kind, channel, locale, missing)
    assert problems(out) == []


@pytest.mark.parametrize(("locale", "fallback"), [("en", "your carrier"), ("es", "tu transportista")])
def test_an_unknown_carrier_is_named_in_the_customers_language(
    renderer: Renderer, locale: str, fallback: str
) -> None:
    missing: dict[Field, Any] = {("shipment", "carrier"): None, ("shipment", "carrier_name"): None}
    out = _render(renderer, NotificationKind.DELIVERY_ATTEMPTED, Channel.EMAIL, locale, missing)
    assert fallback.capitalize() in out.text and fallback.capitalize() in (out.html or "")
    sms = _render(renderer, NotificationKind.DELIVERY_ATTEMPTED, Channel.SMS, locale, missing)
    assert fallback in sms.text
    shipped = _render(renderer, NotificationKind.SHIPPED, Channel.EMAIL, locale, missing)
    assert "USPS" not in shipped.text and not problems(shipped)


@pytest.mark.parametrize(
    ("kind", "channel", "locale"), [t for t in TEMPLATES if t[0] not in MERCHANT_ALERTS], ids=lambda v: str(v)
)
def test_a_known_tracking_link_is_still_shown(
    renderer: Renderer, kind: NotificationKind, channel: Channel, locale: str
) -> None:
    out = _render(renderer, kind, channel, locale, {})
    link = sample_context(kind, locale)["shipment"]["tracking_url"]
    assert link in out.text
    if out.html is not None:
        assert f'href="{link}"' in out.html
