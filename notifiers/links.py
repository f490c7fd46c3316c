"""Tracking links and carrier display names, read from the one carrier table (``domain.carriers``).

Precedence for a shipment's tracking link (docs/api.md, Merchants: ``tracking_url_template``):
merchant's branded ``tracking_url_template`` → Shippo's ``tracking_url_provider``, *only when it
points at that carrier's own tracking site* (:func:`is_carrier_tracking_url`) → the carrier's
public tracking page (:meth:`domain.carriers.Carrier.link`) → ``None``.

Why Shippo's link is checked: it arrives in a webhook body, so whoever can post to a merchant's
webhook URL chooses it, and it becomes the "Track your parcel" button customers trust. A link is
used only if it is ``https``, has no user info, no port, no odd characters, and its host is one of
the carrier's domains (:attr:`domain.carriers.Carrier.hosts`) or a subdomain of one. Anything else
(including Shippo's ``http://www.dhl-usa.com/...`` links) falls back to the carrier's page.

A carrier token the table does not know has no display name (:func:`carrier_name` gives None and
templates say "your carrier") and no link unless the merchant's template makes one: nothing from
the webhook is trusted for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import quote, urlsplit

from domain.carriers import CARRIER_LIST, carrier, normalize_token
from domain.shipment import ShipmentState

#: Public carrier tracking pages; ``{n}`` is the URL-quoted tracking number (derived from the table).
CARRIER_TRACKING_PAGES: Mapping[str, str] = MappingProxyType(
    {c.token: c.page for c in CARRIER_LIST if c.page is not None}
)

#: The carrier's own tracking sites: registrable domains (a host matches the domain itself or any
#: subdomain of it). Shippo's ``tracking_url_provider`` is used only on these (derived from the table).
CARRIER_TRACKING_DOMAINS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {c.token: c.hosts for c in CARRIER_LIST if c.hosts}
)

#: Human names for carrier tokens (derived from the table).
CARRIER_NAMES: Mapping[str, str] = MappingProxyType({c.token: c.name for c in CARRIER_LIST})

#: Schemes a carrier link may use. ``http`` is deliberately absent (no carrier here is http-only):
#: any network in between can rewrite an http page, and the carrier's https page is the fallback.
TRACKING_LINK_SCHEMES: frozenset[str] = frozenset({"https"})


def carrier_name(token: str | None) -> str | None:
    """Display name for a carrier token, or None when the table does not know it (templates then
    say "your carrier" / "tu transportista" rather than guess a name from the token)."""
    known = carrier(token)
    return known.name if known is not None else None


def _quote(value: str) -> str:
    return quote(value, safe="")


# RFC 3986 characters only: no whitespace, control characters, backslashes, quotes, angle
# brackets or non-ASCII (browsers "repair" those in ways urlsplit does not, e.g. ``\`` as ``/``).
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
# A DNS name, lower-cased: labels of letters, digits and inner hyphens, at least two of them. The
# netloc must be exactly this, so user info (``@``), ports, IP literals and a trailing dot all fail.
_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_MAX_URL_CHARS = 2048


def is_carrier_tracking_url(token: str | None, url: str | None) -> bool:
    """True if ``url`` is a plain https link on one of the carrier's own tracking domains.

    Surrounding whitespace is ignored; everything else must be exact: an allowed scheme followed by
    ``://``, a netloc that is only a host name (no user info, no port), and a host equal to one of
    the carrier's :attr:`~domain.carriers.Carrier.hosts` or a subdomain of one (case-insensitive).
    Unknown carriers have no domains, so nothing is trusted for them.
    """
    known = carrier(token)
    if known is None or not known.hosts or not url:
        return False
    text = url.strip()
    if len(text) > _MAX_URL_CHARS or not _URL_CHARS.fullmatch(text):
        return False
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    if parts.scheme not in TRACKING_LINK_SCHEMES or not text[len(parts.scheme) :].startswith("://"):
        return False
    host = parts.netloc.lower()
    return bool(_HOST.fullmatch(host)) and known.allows(host)


def carrier_page(token: str | None, tracking_number: str | None) -> str | None:
    """The carrier's public tracking page for this number, or None (unknown carrier, no page, no number)."""
    known = carrier(token)
    return known.link(tracking_number) if known is not None else None


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
    ``provider_url`` (Shippo's, i.e. from the webhook) is used only when
    :func:`is_carrier_tracking_url` accepts it for this carrier; otherwise the carrier's page.
    """
    number = (tracking_number or "").strip()
    token = normalize_token(carrier)
    if merchant_template and merchant_template.strip() and number:
        return (
            merchant_template.strip()
            .replace("{carrier}", _quote(token))
            .replace("{tracking_number}", _quote(number))
        )
    if provider_url and is_carrier_tracking_url(token, provider_url):
        return provider_url.strip()
    return carrier_page(token, number)


def shipment_tracking_url(state: ShipmentState, merchant_template: str | None) -> str | None:
    """:func:`tracking_url` of a shipment (its carrier, number and Shippo's link) with the
    merchant's ``tracking_url_template``."""
    return tracking_url(
        state.carrier,
        state.tracking_number,
        merchant_template=merchant_template,
        provider_url=state.tracking_url_provider,
    )
