"""The default ``delivered`` and ``partially_delivered`` templates for an order of several parcels
(``notifiers.context.several_parcels_context``) read right in every channel and locale, with every
value known and with the parcels' optional values missing; single-parcel output is unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from domain.vocabulary import Channel, NotificationKind
from notifiers.context import sample_context, several_parcels_context
from notifiers.rendering import Renderer
from tests.unit.test_template_fallbacks import problems

K = NotificationKind
_RENDERER = Renderer()
CASES = [(k, c, loc) for k in (K.DELIVERED, K.PARTIALLY_DELIVERED) for c in Channel for loc in ("en", "es")]


def _blank(ctx: dict[str, Any]) -> dict[str, Any]:
    missing = dict.fromkeys(("carrier", "carrier_name", "tracking_number", "tracking_url", "delivered_on"))
    return {**ctx, "parcels": [{**p, **missing} for p in ctx["parcels"]]}


@pytest.mark.parametrize(("kind", "channel", "locale"), CASES)
def test_several_parcels_read_right_known_or_missing(kind: K, channel: Channel, locale: str) -> None:
    ctx = several_parcels_context(kind, locale)
    for context in (ctx, _blank(ctx)):
        out = _RENDERER.render(kind, channel, context, locales=[locale])
        assert problems(out) == []
        assert out.segments is None or out.segments <= 2


@pytest.mark.parametrize("locale", ["en", "es"])
def test_the_order_level_email_lists_every_parcel_and_the_earlier_one_with_its_date(locale: str) -> None:
    ctx = several_parcels_context(K.DELIVERED, locale)
    out = _RENDERER.render(K.DELIVERED, Channel.EMAIL, ctx, locales=[locale])
    for parcel in ctx["parcels"]:
        assert parcel["tracking_number"] in out.text and f'href="{parcel["tracking_url"]}"' in (
            out.html or ""
        )
    earlier = {"en": "arrived earlier, on March 4, 2026", "es": "llegó antes, el 4 de marzo de 2026"}[locale]
    assert earlier in out.text and earlier in (out.html or "")


@pytest.mark.parametrize("channel", list(Channel))
def test_a_single_parcel_delivered_reads_as_before(channel: Channel) -> None:
    out = _RENDERER.render(K.DELIVERED, channel, sample_context(K.DELIVERED), locales=["en"])
    expected = (
        "USPS delivered order 1042. We hope you enjoy it!"
        if channel is Channel.EMAIL
        else "Northwind Goods: order 1042 was delivered. Enjoy!"
    )
    assert expected in out.text and "parcels" not in out.text


def test_partially_delivered_names_the_parcel_and_how_many_are_on_the_way() -> None:
    ctx = several_parcels_context(K.PARTIALLY_DELIVERED)
    out = _RENDERER.render(K.PARTIALLY_DELIVERED, Channel.EMAIL, ctx, locales=["en"])
    assert "USPS delivered a parcel of order 1042. One more parcel is still on the way" in out.text
    sms = _RENDERER.render(K.PARTIALLY_DELIVERED, Channel.SMS, ctx, locales=["en"])
    assert "a parcel of order 1042 was delivered, 1 more on the way." in sms.text
