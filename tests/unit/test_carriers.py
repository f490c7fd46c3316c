"""One carrier table (``domain/carriers.py``) gives every carrier its name, its tracking link and the
hosts its links may use; the carriers Shippo merchants use most each get a working link, and no
tracking number, whatever it holds, can move that link to another host."""

from __future__ import annotations

import dataclasses
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from domain.carriers import CARRIER_LIST, CARRIERS, HOST_OWNERS, Carrier, owner_of
from domain.fields import CARRIER_HOSTS, carrier_from_url
from domain.payload import carrier_from_url as payload_carrier_from_url
from notifiers.links import (
    CARRIER_NAMES,
    CARRIER_TRACKING_DOMAINS,
    CARRIER_TRACKING_PAGES,
    carrier_name,
    is_carrier_tracking_url,
    tracking_url,
)

NUMBER = "FQ123456785GB"

#: The carriers Shippo merchants use most: token → (display name, a host its built-in link is on).
#: Written out here, independently of the table, so a row dropped or renamed there fails here.
MOST_USED: dict[str, tuple[str, str]] = {
    "usps": ("USPS", "usps.com"),
    "ups": ("UPS", "ups.com"),
    "fedex": ("FedEx", "fedex.com"),
    "dhl_express": ("DHL Express", "dhl.com"),
    "dhl_ecommerce": ("DHL eCommerce", "dhl.com"),
    "canada_post": ("Canada Post", "canadapost-postescanada.ca"),
    "purolator": ("Purolator", "purolator.com"),
    "royal_mail": ("Royal Mail", "royalmail.com"),
    "parcelforce": ("Parcelforce", "parcelforce.com"),
    "australia_post": ("Australia Post", "auspost.com.au"),
    "sendle": ("Sendle", "sendle.com"),
    "ontrac": ("OnTrac", "ontrac.com"),
    "lasership": ("LaserShip", "ontrac.com"),
    "asendia_us": ("Asendia", "asendiausa.com"),
    "hermes_uk": ("Evri", "evri.com"),
    "evri": ("Evri", "evri.com"),
    "dpd_uk": ("DPD", "dpd.co.uk"),
    "dpd_de": ("DPD", "dpd.de"),
    "gls_us": ("GLS", "gls-us.com"),
    "gls_de": ("GLS", "gls-pakete.de"),
    "postnl": ("PostNL", "postnl.nl"),
    "deutsche_post": ("Deutsche Post", "deutschepost.de"),
    "la_poste": ("La Poste", "laposte.fr"),
    "colissimo": ("Colissimo", "laposte.fr"),
    "correos_espana": ("Correos", "correos.es"),
    "correos": ("Correos", "correos.es"),
    "poste_italiane": ("Poste Italiane", "poste.it"),
    "japan_post": ("Japan Post", "japanpost.jp"),
    "aramex": ("Aramex", "aramex.com"),
    "canpar": ("Canpar", "canpar.com"),
}

WITH_PAGE = [c for c in CARRIER_LIST if c.page is not None]


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _on(carrier: Carrier, url: str) -> bool:
    """Independent of the implementation: the host a browser would open is one of the carrier's."""
    parts = urlsplit(url)
    host = parts.netloc.lower()
    return (
        parts.scheme == "https"
        and url.startswith("https://")
        and "@" not in parts.netloc
        and ":" not in parts.netloc
        and any(host == d or host.endswith("." + d) for d in carrier.hosts)
    )


# ------------------------------------------------------------------------------------ the most used


def test_at_least_twenty_five_of_the_most_used_carriers_have_built_in_links() -> None:
    assert len(MOST_USED) >= 25
    assert set(MOST_USED) <= set(CARRIERS)


@pytest.mark.parametrize(("token", "name", "host"), [(t, n, h) for t, (n, h) in MOST_USED.items()])
def test_each_most_used_carrier_has_its_name_and_a_link_on_its_own_host(
    token: str, name: str, host: str
) -> None:
    link = tracking_url(token, NUMBER, merchant_template=None, provider_url=None)
    assert link is not None, f"{token} has no built-in tracking link"
    assert carrier_name(token) == name
    assert carrier_name(token.upper()) == name  # tokens are matched case-insensitively
    assert _host(link) == host or _host(link).endswith("." + host)
    assert _on(CARRIERS[token], link) and is_carrier_tracking_url(token, link)
    assert NUMBER in link


# ------------------------------------------------------------------------------------ every row


@pytest.mark.parametrize("carrier", CARRIER_LIST, ids=lambda c: c.token)
def test_every_row_is_well_formed(carrier: Carrier) -> None:
    assert carrier.token == carrier.token.strip().lower() and carrier.name.strip() == carrier.name
    for domain in carrier.hosts:
        assert domain == domain.lower().strip() and "." in domain and not domain.startswith(("www.", "."))
        assert domain.isascii() and not any(c in domain for c in "/:@\\ ")
    if carrier.page is not None:
        assert carrier.page.startswith("https://") and carrier.page.count("{n}") == 1
        assert "{n}" not in urlsplit(carrier.page).netloc, "the number must never be part of the host"
        assert carrier.hosts and _on(carrier, carrier.page), "a page outside the carrier's own hosts"


@pytest.mark.parametrize("carrier", WITH_PAGE, ids=lambda c: c.token)
def test_every_carrier_with_a_page_gets_a_link_that_passes_its_own_host_check(carrier: Carrier) -> None:
    link = tracking_url(carrier.token, f" {NUMBER} ", merchant_template=None, provider_url=None)
    assert carrier.page is not None and link == carrier.page.replace("{n}", NUMBER)
    assert is_carrier_tracking_url(carrier.token, link)
    # Shippo's own link on one of the carrier's hosts is preferred to the built-in page
    own = f"https://track.{carrier.hosts[0]}/t?n={NUMBER}"
    assert tracking_url(carrier.token, NUMBER, merchant_template=None, provider_url=own) == own


@pytest.mark.parametrize("carrier", [c for c in CARRIER_LIST if c.page is None], ids=lambda c: c.token)
def test_a_carrier_without_a_page_still_has_a_name_and_no_invented_link(carrier: Carrier) -> None:
    assert carrier_name(carrier.token) == carrier.name
    assert tracking_url(carrier.token, NUMBER, merchant_template=None, provider_url=None) is None


def test_the_carrier_row_is_a_frozen_value() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        CARRIERS["usps"].name = "Evil"  # type: ignore[misc]


# ------------------------------------------------------------------------------------ one table


def test_the_link_module_and_the_payload_model_read_the_same_table() -> None:
    assert dict(CARRIER_NAMES) == {c.token: c.name for c in CARRIER_LIST}
    assert dict(CARRIER_TRACKING_PAGES) == {c.token: c.page for c in WITH_PAGE}
    assert dict(CARRIER_TRACKING_DOMAINS) == {c.token: c.hosts for c in CARRIER_LIST if c.hosts}
    assert CARRIER_HOSTS is HOST_OWNERS
    assert {h for c in CARRIER_LIST for h in c.hosts} == set(CARRIER_HOSTS)
    assert carrier_from_url is payload_carrier_from_url


@pytest.mark.parametrize("carrier", WITH_PAGE, ids=lambda c: c.token)
def test_a_labels_carrier_is_inferred_from_any_carrier_page_in_the_table(carrier: Carrier) -> None:
    """A label whose ``rate`` is only an id is named by its tracking page's host: every page of the
    table is recognised, as the carrier itself or the carrier listed first for a shared domain."""
    inferred = carrier_from_url(carrier.link(NUMBER))
    assert inferred is not None
    shared = CARRIERS[inferred]
    assert _on(shared, carrier.link(NUMBER) or "")
    if carrier.token in {"usps", "ups", "fedex", "royal_mail", "canada_post", "purolator", "dhl_express"}:
        assert inferred == carrier.token


@pytest.mark.parametrize(
    ("host", "owner"),
    [
        ("www.dhl-usa.com", "dhl_express"),
        ("www.dhl.com", "dhl_express"),
        ("www.evri.com", "hermes_uk"),  # Shippo's token, not the alias
        ("www.laposte.fr", "la_poste"),
        ("www.ontrac.com", "ontrac"),
        ("track.sendle.com", "sendle"),
        ("usps.com.evil.example", None),
        ("evilusps.com", None),
        ("dhl.evil.example", None),  # the old substring rule took any host containing "dhl"
        ("com", None),
        ("", None),
    ],
)
def test_a_host_belongs_to_the_carrier_whose_domain_it_is(host: str, owner: str | None) -> None:
    assert owner_of(host) == owner


# ------------------------------------------------------------------------------------ any number

_HOSTILE_NUMBERS = st.sampled_from(
    [
        "@evil.example",
        "x@evil.example/",
        "//evil.example/x",
        "\\\\evil.example",
        "#@evil.example",
        "?next=https://evil.example",
        "/../../evil.example",
        "%2F%2Fevil.example",
        "https://evil.example",
        "a b\tc\nd",
        "Ω≈ç√ 包裹 📦",
        "\u202etxe.live",
        "1Z999AA1/0123?45#67&x=1",
    ]
)
_NUMBERS = st.one_of(
    st.text(min_size=0, max_size=60),
    st.text(
        alphabet=st.sampled_from(list("/?#@\\:%& .+=;\t\n'\"<>") + ["é", "ü", "€", "\u200b"]), max_size=30
    ),
    _HOSTILE_NUMBERS,
    st.tuples(st.from_regex(r"[A-Z0-9]{6,20}", fullmatch=True), _HOSTILE_NUMBERS).map("".join),
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([*CARRIERS, "unknown_carrier", "", "USPS ", "Royal_Mail"]), _NUMBERS)
@example("royal_mail", "@evil.example/#")
@example("australia_post", "../../evil.example")
@example("usps", "\ud800")  # a lone surrogate (refused by the receiver anyway): no link, no crash
def test_any_tracking_number_gives_a_link_on_the_carriers_host_or_none(token: str, number: str) -> None:
    link = tracking_url(token, number, merchant_template=None, provider_url=None)
    known = CARRIERS.get(token.strip().lower())
    if link is None:
        return
    assert known is not None and known.page is not None, "an unknown carrier never gets a link"
    assert _on(known, link), f"{link!r} left {known.hosts}"
    assert _host(link) == _host(known.page)  # exactly the page's host: the number moved nothing
    assert "evil.example" not in (urlsplit(link).hostname or "")
    assert link.isascii() and link.isprintable() and not any(c in link for c in " \\\"<>'")
    assert is_carrier_tracking_url(known.token, link)
    prefix, suffix = known.page.split("{n}")
    assert link.startswith(prefix) and link.endswith(suffix)
    assert unquote(link[len(prefix) : len(link) - len(suffix)]) == number.strip()
