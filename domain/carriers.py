"""The carriers parcelhook knows: one row per Shippo carrier token (pure, stdlib only).

A :class:`Carrier` is everything the rest of the system needs to know about one carrier: the
Shippo token that keys it, the name customers read, the public tracking page a link is built from,
and the host domains its tracking links may use. Two places read this one table:

* ``domain.fields.carrier_from_url`` names the carrier of a label whose ``rate`` is only an id,
  from the host of Shippo's ``tracking_url_provider`` (:data:`HOST_OWNERS`);
* ``notifiers.links`` builds the customer's "Track your parcel" link and decides whether Shippo's
  own link may be used instead (only on one of :attr:`Carrier.hosts`).

Keys are Shippo's carrier tokens (``Track.carrier``; a label's ``rate.provider`` lower-cased with
``_`` for spaces). Checked against Shippo's published ``CarriersEnum`` and its tracking-carriers
page, except the few marked *alias* below: names that integrations and older payloads use for the
same carrier (e.g. ``evri`` for Shippo's ``hermes_uk``) — harmless, because a key only ever
matches exactly.

``hosts`` are registrable domains: a link's host matches one when it *is* that domain or a
subdomain of it (``tools.usps.com`` matches ``usps.com``; ``usps.com.evil.example`` does not).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import quote

#: The placeholder of a tracking page template: the URL-quoted tracking number.
NUMBER = "{n}"


@dataclass(frozen=True, slots=True)
class Carrier:
    """One carrier: Shippo token, display name, public tracking page, trusted link hosts."""

    token: str
    name: str
    #: ``https://…{n}…`` (``{n}`` once: the tracking number, every reserved character quoted), or
    #: None when no public page takes the number in its URL (Shippo's link may still be used).
    page: str | None
    #: Registrable domains the carrier's tracking links live on (lower-case, no ``www.``).
    hosts: tuple[str, ...]

    def link(self, tracking_number: str | None) -> str | None:
        """The carrier's public tracking page for this number, or None (no page, or no number).

        The number is quoted with ``safe=""``: ``/``, ``?``, ``#``, ``@``, ``\\``, spaces and any
        non-ASCII character become ``%XX``, so whatever the number holds it stays inside the
        template's query, path or fragment and can never change the link's host.
        """
        number = (tracking_number or "").strip()
        if self.page is None or not number:
            return None
        try:
            quoted = quote(number, safe="")
        except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form: no link rather than a guess
            return None
        return self.page.replace(NUMBER, quoted)

    def allows(self, host: str) -> bool:
        """True if ``host`` (already lower-cased) is one of :attr:`hosts` or a subdomain of one."""
        return any(host == domain or host.endswith("." + domain) for domain in self.hosts)


def _c(token: str, name: str, page: str | None, *hosts: str) -> Carrier:
    return Carrier(token=token, name=name, page=page, hosts=hosts)


_DHL_PAGE = "https://www.dhl.com/global-en/home/tracking.html?tracking-id={n}"
_EVRI_PAGE = "https://www.evri.com/track/parcel/{n}/details"
_LA_POSTE_PAGE = "https://www.laposte.fr/outils/suivre-vos-envois?code={n}"
_ONTRAC_PAGE = "https://www.ontrac.com/tracking/?number={n}"
_ROYAL_MAIL_PAGE = "https://www.royalmail.com/track-your-item#/tracking-results/{n}"
_CORREOS_PAGE = "https://www.correos.es/es/es/herramientas/localizador/envios/detalle?tracking-number={n}"

#: Every known carrier. Order matters only for :data:`HOST_OWNERS`: when several carriers share a
#: domain (DHL's, OnTrac's, La Poste's, Evri's), the first one listed owns it for inference.
CARRIER_LIST: tuple[Carrier, ...] = (
    # --- United States
    _c("usps", "USPS", "https://tools.usps.com/go/TrackConfirmAction?tLabels={n}", "usps.com"),
    _c("ups", "UPS", "https://www.ups.com/track?tracknum={n}", "ups.com"),
    _c("fedex", "FedEx", "https://www.fedex.com/fedextrack/?trknbr={n}", "fedex.com"),
    _c("dhl_express", "DHL Express", _DHL_PAGE, "dhl.com", "dhl-usa.com"),
    _c(
        "dhl_ecommerce",
        "DHL eCommerce",
        "https://www.dhl.com/us-en/home/tracking/tracking-ecommerce.html?tracking-id={n}",
        "dhl.com",
        "dhlecs.com",
        "dhlglobalmail.com",
    ),
    _c("ontrac", "OnTrac", _ONTRAC_PAGE, "ontrac.com"),
    _c("lasership", "LaserShip", _ONTRAC_PAGE, "lasership.com", "ontrac.com"),  # now part of OnTrac
    _c(
        "asendia_us",
        "Asendia",
        "https://a1.asendiausa.com/tracking/?trackingnumber={n}",
        "asendia.com",
        "asendiausa.com",
    ),
    _c("gls_us", "GLS", "https://www.gls-us.com/track-and-trace?TrackingNumbers={n}", "gls-us.com"),
    _c("lso", "LSO", None, "lso.com"),
    # --- Canada
    _c(
        "canada_post",
        "Canada Post",
        "https://www.canadapost-postescanada.ca/track-reperage/en#/search?searchFor={n}",
        "canadapost-postescanada.ca",
        "canadapost.ca",
        "postescanada.ca",
    ),
    _c("purolator", "Purolator", "https://www.purolator.com/en/shipping/tracker?pin={n}", "purolator.com"),
    _c(  # alias: not in Shippo's published enum
        "canpar",
        "Canpar",
        "https://www.canpar.com/en/tracking/track.htm?barcode={n}",
        "canpar.com",
        "canpar.ca",
    ),
    # --- United Kingdom
    _c("royal_mail", "Royal Mail", _ROYAL_MAIL_PAGE, "royalmail.com"),
    _c("royal_mail_sf", "Royal Mail", _ROYAL_MAIL_PAGE, "royalmail.com"),  # Royal Mail Tracked
    _c(
        "parcelforce",
        "Parcelforce",
        "https://www.parcelforce.com/track-trace?trackNumber={n}",
        "parcelforce.com",
    ),
    _c("hermes_uk", "Evri", _EVRI_PAGE, "evri.com", "myhermes.co.uk"),
    _c("evri", "Evri", _EVRI_PAGE, "evri.com", "myhermes.co.uk"),  # alias of hermes_uk
    _c("dpd_uk", "DPD", "https://www.dpd.co.uk/apps/tracking/?reference={n}", "dpd.co.uk"),
    _c("yodel", "Yodel", "https://www.yodel.co.uk/tracking/{n}", "yodel.co.uk"),  # alias
    # --- Europe
    _c(
        "dhl_germany",
        "DHL",
        "https://www.dhl.de/de/privatkunden/pakete-empfangen/verfolgen.html?piececode={n}",
        "dhl.de",
        "dhl.com",
    ),
    _c(
        "deutsche_post",
        "Deutsche Post",
        "https://www.deutschepost.de/de/s/sendungsverfolgung.html?piececode={n}",
        "deutschepost.de",
        "dhl.de",
    ),
    _c(
        "dhl_benelux",
        "DHL",
        "https://www.dhl.com/nl-en/home/tracking.html?tracking-id={n}",
        "dhl.com",
        "dhlparcel.nl",
    ),
    _c("dpd_de", "DPD", "https://tracking.dpd.de/status/de_DE/parcel/{n}", "dpd.de", "dpd.com"),
    _c(  # alias: Shippo's enum lists gls_us only
        "gls_de",
        "GLS",
        "https://www.gls-pakete.de/sendungsverfolgung?trackingNumber={n}",
        "gls-pakete.de",
        "gls-group.eu",
        "gls-group.com",
    ),
    _c("postnl", "PostNL", "https://jouw.postnl.nl/track-and-trace/{n}", "postnl.nl", "postnl.com"),  # alias
    _c("la_poste", "La Poste", _LA_POSTE_PAGE, "laposte.fr"),
    _c("colissimo", "Colissimo", _LA_POSTE_PAGE, "laposte.fr", "colissimo.fr"),
    _c(
        "chronopost",
        "Chronopost",
        "https://www.chronopost.fr/tracking-no-cms/suivi-page?listeNumerosLT={n}",
        "chronopost.fr",
    ),
    _c("mondial_relay", "Mondial Relay", None, "mondialrelay.fr", "mondialrelay.com"),
    _c("correos_espana", "Correos", _CORREOS_PAGE, "correos.es"),
    _c("correos", "Correos", _CORREOS_PAGE, "correos.es"),  # alias of correos_espana
    _c(
        "poste_italiane",
        "Poste Italiane",
        "https://www.poste.it/cerca/index.html#/risultati-spedizioni/{n}",
        "poste.it",
    ),
    _c("posti", "Posti", "https://www.posti.fi/fi/seuranta#/lahetys/{n}", "posti.fi"),
    _c("bring", "Bring", "https://tracking.bring.com/tracking/{n}", "bring.no", "bring.com"),
    # --- Asia-Pacific, Middle East, Latin America
    _c(
        "australia_post",
        "Australia Post",
        "https://auspost.com.au/mypost/track/details/{n}",
        "auspost.com.au",
    ),
    _c("sendle", "Sendle", "https://track.sendle.com/tracking?ref={n}", "sendle.com"),
    _c(
        "fastway_australia",  # Shippo: "Aramex" (Aramex Australia, formerly Fastway)
        "Aramex",
        "https://www.aramex.com.au/tools/track?l={n}",
        "aramex.com.au",
        "fastway.com.au",
    ),
    _c("new_zealand_post", "NZ Post", "https://www.nzpost.co.nz/tools/tracking/item/{n}", "nzpost.co.nz"),
    _c(  # alias: not in Shippo's published enum
        "japan_post",
        "Japan Post",
        "https://trackings.post.japanpost.jp/services/srv/search/direct?locale=en&reqCodeNo1={n}",
        "japanpost.jp",
    ),
    _c("aramex", "Aramex", "https://www.aramex.com/us/en/track/results?ShipmentNumber={n}", "aramex.com"),
    _c("estafeta", "Estafeta", None, "estafeta.com"),
    _c("correios_br", "Correios", None, "correios.com.br"),
    # --- Shippo's test mode: a name, no tracking site
    _c("shippo", "Shippo (test)", None),
)

#: The table by token.
CARRIERS: Mapping[str, Carrier] = MappingProxyType({c.token: c for c in CARRIER_LIST})

#: Registrable domain → the carrier that owns it for inference (the first listed that has it).
HOST_OWNERS: Mapping[str, str] = MappingProxyType(
    {host: c.token for c in reversed(CARRIER_LIST) for host in c.hosts}
)


def normalize_token(carrier: str | None) -> str:
    return (carrier or "").strip().lower()


def carrier(token: str | None) -> Carrier | None:
    """The table's row for a Shippo token (case and surrounding space ignored), or None."""
    return CARRIERS.get(normalize_token(token))


def owner_of(host: str) -> str | None:
    """The carrier token whose domain ``host`` (lower-case) is, or is a subdomain of; or None."""
    labels = host.split(".")
    for start in range(len(labels) - 1):
        token = HOST_OWNERS.get(".".join(labels[start:]))
        if token is not None:
            return token
    return None
