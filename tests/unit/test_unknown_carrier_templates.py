"""A shipment whose carrier parcelhook does not know reads as "your carrier" ("tu transportista"),
shows its tracking number, and carries no tracking link — in every default customer template
(email subject, text and HTML, SMS; en and es), rendered by the real renderer from the context the
sender builds (``notifiers.links``: ``carrier_name`` and ``tracking_url``)."""

from __future__ import annotations

import re
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from domain.vocabulary import MERCHANT_ALERTS, Channel, NotificationKind
from notifiers.context import sample_context
from notifiers.links import carrier_name, tracking_url
from notifiers.rendering import DEFAULT_TEMPLATES_DIR, Rendered, Renderer

NUMBER = "AF-7731 0042"
KNOWN = "royal_mail"
UNKNOWN = "acme_freight"  # a token Shippo could send that the table does not know
#: What Shippo's webhook says the link is: never trusted for a carrier without known hosts.
PROVIDER_URL = f"https://track.acme-freight.example/t?n={NUMBER}"
FALLBACK = {"en": "your carrier", "es": "tu transportista"}
OLD_WORDING = re.compile(r"\b(the carrier|el transportista|del transportista)\b", re.I)


def _customer_templates() -> list[tuple[NotificationKind, Channel, str]]:
    found = []
    for path in sorted(Path(DEFAULT_TEMPLATES_DIR).glob("*/*/*.text.txt")):
        if path.name.startswith("_"):
            continue
        kind = NotificationKind(path.name.removesuffix(".text.txt"))
        if kind not in MERCHANT_ALERTS:
            found.append((kind, Channel(path.parent.parent.name), path.parent.name))
    return found


TEMPLATES = _customer_templates()
IDS = [f"{c.value}-{loc}-{k.value}" for k, c, loc in TEMPLATES]
_RENDERER = Renderer()


def _context(kind: NotificationKind, locale: str, carrier: str) -> dict[str, Any]:
    ctx = {k: dict(v) if isinstance(v, dict) else v for k, v in sample_context(kind, locale).items()}
    ctx["shipment"].update(
        carrier=carrier,
        carrier_name=carrier_name(carrier),  # as workers/sending.py builds it
        tracking_number=NUMBER,
        tracking_url=tracking_url(carrier, NUMBER, merchant_template=None, provider_url=PROVIDER_URL),
        eta=date(2026, 3, 6),
    )
    if ctx["exception"]["class"]:  # the sample's carrier prose ("…the carrier network") is data, not wording
        ctx["exception"]["detail"] = "Scan detail 4471."
    return ctx


def _render(kind: NotificationKind, channel: Channel, locale: str, carrier: str) -> Rendered:
    return _RENDERER.render(kind, channel, _context(kind, locale, carrier), locales=[locale])


class _Visible(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs += [v or "" for k, v in attrs if k == "href"]

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _html(html: str) -> tuple[str, list[str]]:
    parser = _Visible()
    parser.feed(html)
    return re.sub(r"\s+", " ", "".join(parser.parts)), parser.hrefs


# The "Carrier: X" facts (footer line, details row) are left out when the carrier is unknown; the
# prose is what must still name *someone*.
_FACT_LINE = re.compile(r"^(Carrier|Transportista): .*$", re.M)
_FACT_ROW = re.compile(r"<tr><td[^>]*>(Carrier|Transportista)</td>.*?</tr>", re.S)


_ADJUNCT = re.compile(r" (with|by|con) Royal Mail\b")


def _prose(out: Rendered) -> list[str]:
    parts = [out.subject or "", _FACT_LINE.sub("", out.text)]
    if out.html is not None:
        parts.append(_html(_FACT_ROW.sub("", out.html))[0])
    return parts


def test_the_unknown_carrier_has_no_name_and_no_link() -> None:
    assert carrier_name(UNKNOWN) is None
    assert tracking_url(UNKNOWN, NUMBER, merchant_template=None, provider_url=PROVIDER_URL) is None
    assert carrier_name(KNOWN) == "Royal Mail"


@pytest.mark.parametrize(("kind", "channel", "locale"), TEMPLATES, ids=IDS)
def test_an_unknown_carrier_is_your_carrier_with_the_number_and_no_link(
    kind: NotificationKind, channel: Channel, locale: str
) -> None:
    known, unknown = _render(kind, channel, locale, KNOWN), _render(kind, channel, locale, UNKNOWN)

    # the number is shown, no link is (in the text, the HTML's visible text and its hrefs)
    assert NUMBER in unknown.text
    for out in (unknown.text, unknown.subject or ""):
        assert "http" not in out.replace(str(_context(kind, locale, UNKNOWN)["unsubscribe_url"]), "").replace(
            "https://northwind.example/help", ""
        )
    assert not re.search(r"(Track your parcel|Sigue tu paquete|Track: |Seguimiento: http)", unknown.text)
    if unknown.html is not None:
        visible, hrefs = _html(unknown.html)
        assert NUMBER in visible
        assert "Track your parcel" not in visible and "Sigue tu paquete" not in visible
        assert all(
            h.startswith(("mailto:", "https://northwind.example/", "https://notify.northwind."))
            for h in hrefs
        )
        assert "acme-freight" not in unknown.html

    # wherever the known carrier does something in a sentence ("Royal Mail tried to deliver…", "…the
    # Royal Mail network"), the unknown one is "your carrier"; a mere "… with Royal Mail" is dropped
    # (templates/README.md: leave the phrase out), which the other template tests keep tidy
    for with_name, without in zip(_prose(known), _prose(unknown), strict=True):
        assert "Acme" not in without and "acme_freight" not in without and "None" not in without
        assert not OLD_WORDING.search(without), without
        if "Royal Mail" in _ADJUNCT.sub("", with_name):
            assert FALLBACK[locale] in without.lower(), f"{without!r} names no carrier"


@pytest.mark.parametrize(("kind", "channel", "locale"), TEMPLATES, ids=IDS)
def test_a_known_carrier_is_named_and_linked(kind: NotificationKind, channel: Channel, locale: str) -> None:
    out = _render(kind, channel, locale, KNOWN)
    link = f"https://www.royalmail.com/track-your-item#/tracking-results/{NUMBER.replace(' ', '%20')}"
    assert link in out.text
    if out.html is not None:
        assert link in _html(out.html)[1] and "Royal Mail" in _html(out.html)[0]


def test_the_fallback_wording_is_said_somewhere_in_each_locale_and_channel() -> None:
    """Not vacuous: the sentence check above bites on real templates in every locale and channel."""
    seen = set()
    for kind, channel, locale in TEMPLATES:
        if any(FALLBACK[locale] in p.lower() for p in _prose(_render(kind, channel, locale, UNKNOWN))):
            seen.add((channel, locale))
    assert seen == {(c, loc) for c in Channel for loc in ("en", "es")}
