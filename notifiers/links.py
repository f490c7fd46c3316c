"""Tracking links and carrier display names.

Precedence for a shipment's tracking link (docs/api.md, Merchants: ``tracking_url_template``):
merchant's branded ``tracking_url_template`` → Shippo's ``tracking_url_provider``, *only when it
points at that carrier's own tracking site* (:func:`is_carrier_tracking_url`) → the carrier's
public tracking page from :data:`CARRIER_TRACKING_PAGES` → ``None``.

Why Shippo's link is checked: it arrives in a webhook body, so whoever can post to a merchant's
webhook URL chooses it, and it becomes the "Track your parcel" button customers trust. A link is
used only if it is ``https``, has no user info, no port, no odd characters, and its host is one of
the carrier's domains in :data:`CARRIER_TRACKING_DOMAINS` or a subdomain of one. Anything else
(including Shippo's ``http://www.dhl-usa.com/...`` links) falls back to the carrier's page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import quote, urlsplit

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

#: The carrier's own tracking sites: registrable domains (a host matches the domain itself or any
#: subdomain of it). Shippo's ``tracking_url_provider`` is used only on these; every carrier of
#: :data:`CARRIER_TRACKING_PAGES` has an entry, plus the common Shippo tokens whose official
#: domains are certain. A carrier without an entry never gets Shippo's link, only its page (if any).
CARRIER_TRACKING_DOMAINS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "usps": ("usps.com",),
        "ups": ("ups.com",),
        "fedex": ("fedex.com",),
        "dhl_express": ("dhl.com", "dhl-usa.com"),
        "dhl_ecommerce": ("dhl.com", "dhlglobalmail.com"),
        "dhl_germany": ("dhl.de", "dhl.com"),
        "dhl_benelux": ("dhl.com",),
        "deutsche_post": ("deutschepost.de", "dhl.de"),
        "canada_post": ("canadapost-postescanada.ca", "canadapost.ca", "postescanada.ca"),
        "royal_mail": ("royalmail.com",),
        "parcelforce": ("parcelforce.com",),
        "purolator": ("purolator.com",),
        "ontrac": ("ontrac.com",),
        "lasership": ("lasership.com", "ontrac.com"),
        "australia_post": ("auspost.com.au",),
        "new_zealand_post": ("nzpost.co.nz",),
        "dpd_uk": ("dpd.co.uk",),
        "dpd_de": ("dpd.de", "dpd.com"),
        "hermes_uk": ("evri.com", "myhermes.co.uk"),
        "evri": ("evri.com", "myhermes.co.uk"),
        "japan_post": ("japanpost.jp",),
        "la_poste": ("laposte.fr",),
        "colissimo": ("laposte.fr", "colissimo.fr"),
        "chronopost": ("chronopost.fr",),
        "mondial_relay": ("mondialrelay.fr",),
        "correos_espana": ("correos.es",),
        "correios_br": ("correios.com.br",),
        "postnl": ("postnl.nl",),
        "poste_italiane": ("poste.it",),
        "posti": ("posti.fi",),
        "bring": ("bring.no",),
        "aramex": ("aramex.com",),
        "estafeta": ("estafeta.com",),
        "lso": ("lso.com",),
        "asendia_us": ("asendia.com",),
        "yodel": ("yodel.co.uk",),
    }
)

#: Schemes a carrier link may use. ``http`` is deliberately absent (no carrier here is http-only):
#: any network in between can rewrite an http page, and the carrier's https page is the fallback.
TRACKING_LINK_SCHEMES: frozenset[str] = frozenset({"https"})

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
        "ontrac": "OnTrac",
        "la_poste": "La Poste",
        "hermes_uk": "Evri",
        "evri": "Evri",
        "correos_espana": "Correos",
        "correios_br": "Correios",
        "postnl": "PostNL",
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


# RFC 3986 characters only: no whitespace, control characters, backslashes, quotes, angle
# brackets or non-ASCII (browsers "repair" those in ways urlsplit does not, e.g. ``\`` as ``/``).
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
# A DNS name, lower-cased: labels of letters, digits and inner hyphens, at least two of them. The
# netloc must be exactly this, so user info (``@``), ports, IP literals and a trailing dot all fail.
_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_MAX_URL_CHARS = 2048


def _host_in(host: str, domains: tuple[str, ...]) -> bool:
    return any(host == domain or host.endswith("." + domain) for domain in domains)


def is_carrier_tracking_url(carrier: str | None, url: str | None) -> bool:
    """True if ``url`` is a plain https link on one of ``carrier``'s own tracking domains.

    Surrounding whitespace is ignored; everything else must be exact: an allowed scheme followed by
    ``://``, a netloc that is only a host name (no user info, no port), and a host equal to a domain
    of :data:`CARRIER_TRACKING_DOMAINS` or a subdomain of one (case-insensitive). Unknown carriers
    have no domains, so nothing is trusted for them.
    """
    domains = CARRIER_TRACKING_DOMAINS.get(_normalize_token(carrier))
    if not domains or not url:
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
    return bool(_HOST.fullmatch(host)) and _host_in(host, domains)


def carrier_page(carrier: str | None, tracking_number: str | None) -> str | None:
    """The carrier's public tracking page for this number (:data:`CARRIER_TRACKING_PAGES`), or None."""
    number = (tracking_number or "").strip()
    token = _normalize_token(carrier)
    if number and token in CARRIER_TRACKING_PAGES:
        return CARRIER_TRACKING_PAGES[token].format(n=_quote(number))
    return None


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
    token = _normalize_token(carrier)
    if merchant_template and merchant_template.strip() and number:
        return (
            merchant_template.strip()
            .replace("{carrier}", _quote(token))
            .replace("{tracking_number}", _quote(number))
        )
    if provider_url and is_carrier_tracking_url(token, provider_url):
        return provider_url.strip()
    return carrier_page(token, number)
