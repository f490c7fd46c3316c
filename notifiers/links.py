"""Tracking links and carrier display names.

Precedence for a shipment's tracking link (CONTRACT §4, shippo/README):
merchant's branded ``tracking_url_template`` → Shippo's ``tracking_url_provider``
→ the carrier's public tracking page from :data:`CARRIER_TRACKING_PAGES` → ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import quote

#: Public carrier tracking pages; ``{n}`` is the URL-quoted tracking number.
CARRIER_TRACKING_PAGES: Mapping[str, str] = MappingProxyType(
    {
        "usps": "https://tools.usps.com/go/TrackConfirmAction?tLabels={n}",
        "ups": "https://www.ups.com/track?tracknum={n}",
        "fedex": "https://www.fedex.com/fedextrack/?trknbr={n}",
        "dhl_express": "https://www.dhl.com/global-en/home/tracking.html?tracking-id={n}",
        "canada_post": "https://www.canadapost-postescanada.ca/track-reperage/en#/search?searchFor={n}",
        "royal_mail": "https://www.royalmail.com/track-your-item#/tracking-results/{n}",
        "purolator": "https://www.purolator.com/en/shipping/tracker?pin={n}",
    }
)

#: Human names for carrier tokens; unknown tokens fall back via :func:`carrier_name`.
CARRIER_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "usps": "USPS",
        "ups": "UPS",
        "fedex": "FedEx",
        "dhl_express": "DHL Express",
        "canada_post": "Canada Post",
        "royal_mail": "Royal Mail",
        "purolator": "Purolator",
        "shippo": "Shippo (test)",
    }
)


def _normalize_token(carrier: str | None) -> str:
    return (carrier or "").strip().lower()


def carrier_name(carrier: str | None) -> str:
    """Display name for a carrier token: the table, else ``"dhl_ecommerce"`` → ``"Dhl Ecommerce"``.

    Short tokens (≤ 4 letters, e.g. ``"tnt"``) are upper-cased; an empty token gives ``"the carrier"``.
    """
    token = _normalize_token(carrier)
    if not token:
        return "the carrier"
    if token in CARRIER_NAMES:
        return CARRIER_NAMES[token]
    words = [w for w in token.replace("-", "_").split("_") if w]
    return " ".join(w.upper() if len(w) <= 3 else w.capitalize() for w in words) or token


def _quote(value: str) -> str:
    return quote(value, safe="")


def _is_http_url(url: str) -> bool:
    lowered = url.strip().lower()
    return lowered.startswith("https://") or lowered.startswith("http://")


def tracking_url(
    carrier: str | None,
    tracking_number: str | None,
    *,
    merchant_template: str | None,
    provider_url: str | None,
) -> str | None:
    """The link a customer should follow to track this parcel, or ``None``.

    ``merchant_template`` may use ``{carrier}`` and ``{tracking_number}`` (both URL-quoted);
    any other brace text is left untouched (no ``str.format``: merchant input is untrusted).
    Non-http(s) provider URLs are ignored (no ``javascript:`` links in an email).
    """
    number = (tracking_number or "").strip()
    token = _normalize_token(carrier)
    if merchant_template and merchant_template.strip() and number:
        return (
            merchant_template.strip()
            .replace("{carrier}", _quote(token))
            .replace("{tracking_number}", _quote(number))
        )
    if provider_url and provider_url.strip() and _is_http_url(provider_url):
        return provider_url.strip()
    if number and token in CARRIER_TRACKING_PAGES:
        return CARRIER_TRACKING_PAGES[token].format(n=_quote(number))
    return None
