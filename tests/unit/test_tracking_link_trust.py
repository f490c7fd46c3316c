"""Shippo's ``tracking_url_provider`` becomes the customer's "Track your parcel" link only when it
is an https link on that carrier's own tracking site; anything else falls back to the carrier's
public page (or the merchant's branded template, which still comes first)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifiers.links import (
    CARRIER_NAMES,
    CARRIER_TRACKING_DOMAINS,
    CARRIER_TRACKING_PAGES,
    carrier_name,
    carrier_page,
    is_carrier_tracking_url,
    tracking_url,
)
from tests.fixtures.shippo import body

NUMBER = "9205590164917312751089"
CARRIERS = sorted(CARRIER_TRACKING_DOMAINS)
EVIL = "evil.example"


def _fallback(carrier: str) -> str | None:
    return carrier_page(carrier, NUMBER)


def _link(carrier: str, provider_url: str | None) -> str | None:
    return tracking_url(carrier, NUMBER, merchant_template=None, provider_url=provider_url)


def _on_carrier_site(carrier: str, url: str) -> bool:
    """Independent of the implementation: what a browser would open, judged on the parsed URL."""
    parts = urlsplit(url)
    host = parts.netloc.lower()
    return (
        parts.scheme == "https"
        and url.startswith(parts.scheme + "://")
        and "@" not in parts.netloc
        and ":" not in parts.netloc
        and not host.endswith(".")
        and any(host == d or host.endswith("." + d) for d in CARRIER_TRACKING_DOMAINS[carrier])
    )


# ------------------------------------------------------------------------------------ the table


@pytest.mark.parametrize("carrier", sorted(CARRIER_TRACKING_PAGES))
def test_every_carrier_with_a_page_has_tracking_domains_that_include_its_page(carrier: str) -> None:
    assert CARRIER_TRACKING_DOMAINS.get(carrier), f"{carrier} has a page but no trusted domains"
    page = CARRIER_TRACKING_PAGES[carrier].format(n=NUMBER)
    assert is_carrier_tracking_url(carrier, page), "the built-in page must pass its own check"


@pytest.mark.parametrize("carrier", CARRIERS)
def test_domains_are_plain_lower_case_registrable_names(carrier: str) -> None:
    assert CARRIER_TRACKING_DOMAINS[carrier], "a carrier without a domain would trust no link"
    for domain in CARRIER_TRACKING_DOMAINS[carrier]:
        assert domain == domain.lower().strip() and "." in domain and not domain.startswith(("www.", "."))
        assert domain.isascii() and "/" not in domain and ":" not in domain
    assert carrier_name(carrier) and carrier_name(carrier) != "the carrier"


def test_display_names_for_tokens_the_fallback_would_mangle() -> None:
    assert carrier_name("la_poste") == "La Poste"  # the short-word rule would give "LA Poste"
    assert carrier_name("hermes_uk") == "Evri"
    assert carrier_name("ontrac") == "OnTrac"
    assert set(CARRIER_TRACKING_PAGES) <= set(CARRIER_NAMES)


# ------------------------------------------------------------------------------------ official links pass


def _official_links(domain: str) -> list[str]:
    return [
        f"https://{domain}/",
        f"https://www.{domain}/track?tracknum={NUMBER}&loc=en_US",
        f"https://tools.{domain}/go/TrackConfirmAction_input?origTrackNum={NUMBER}#results",
        f"HTTPS://WWW.{domain.upper()}/Track/{NUMBER}",
        f"  https://www.{domain}/track?n={NUMBER}\n",  # surrounding whitespace is not part of the URL
    ]


@pytest.mark.parametrize(
    ("carrier", "url"),
    [(c, u) for c in CARRIERS for d in CARRIER_TRACKING_DOMAINS[c] for u in _official_links(d)],
)
def test_an_official_carrier_link_is_used(carrier: str, url: str) -> None:
    assert _link(carrier, url) == url.strip()


@pytest.mark.parametrize(
    ("carrier", "url"),
    [
        ("usps", "https://tools.usps.com/go/TrackConfirmAction_input?origTrackNum=9205590164917312751089"),
        ("ups", "https://www.ups.com/track?tracknum=1Z999AA10123456784&loc=en_US"),
        (
            "fedex",
            "https://www.fedex.com/apps/fedextrack/?action=track&cntry_code=us&trackingnumber=794644790138",
        ),
    ],
)
def test_the_links_in_shippos_samples_are_used(carrier: str, url: str) -> None:
    assert _link(carrier, url) == url


def test_shippos_plain_http_dhl_link_gives_way_to_dhls_https_page() -> None:
    sample = body("transaction_created_instalabel.json")["data"]["tracking_url_provider"]
    assert sample.startswith("http://www.dhl-usa.com/")
    assert (
        tracking_url("dhl_express", "4157349920", merchant_template=None, provider_url=sample)
        == "https://www.dhl.com/global-en/home/tracking.html?tracking-id=4157349920"
    )


def test_the_merchants_branded_template_still_comes_first() -> None:
    assert (
        tracking_url(
            "usps",
            "94 00",
            merchant_template="https://track.acme.example/{carrier}/{tracking_number}",
            provider_url=f"https://{EVIL}/x",
        )
        == "https://track.acme.example/usps/94%2000"
    )


# ------------------------------------------------------------------------------------ hostile links fall back

HOSTILE = [
    "https://usps.com.evil.example/track",  # carrier domain as a prefix of the attacker's
    "https://tools.usps.com.evil.example/",
    "https://evilusps.com/track",  # lookalike suffix without a dot
    "https://usps-com.evil.example/",
    "https://usps.co/track",
    "https://usps.com@evil.example/track",  # user info: the host is evil.example
    "https://tools.usps.com:x@evil.example/",
    "https://evil.example\\@tools.usps.com/",  # browsers read \ as /: host evil.example
    "https://evil.example\\.usps.com/",
    "https://evil.example%2F@usps.com/",
    "https://tools.usps.com./track",  # trailing dot
    "https://tools.usps.com:8443/track",  # port
    "https://tools.usps.com:443/track",
    "http://tools.usps.com/track",  # plain http
    "ftp://tools.usps.com/track",
    "javascript:alert(document.cookie)//tools.usps.com",
    "javascript://tools.usps.com/%0aalert(1)",
    "data:text/html,<script>alert(1)</script>//usps.com",
    "https:tools.usps.com/track",  # scheme without //
    "https:/tools.usps.com/track",
    "https:///tools.usps.com/track",
    "//tools.usps.com/track",  # scheme-relative
    "tools.usps.com/track",
    "https://tools.us\tps.com/track",  # browsers drop tabs and newlines inside URLs
    "https://tools.usps.com\n.evil.example/",
    "https://tools.usps.com\r\n@evil.example/",
    "https://tools.usps.com /track",
    "https://\u0442ools.usps.com/track",  # Cyrillic te: an IDN homograph
    "https://tools.usps.com\u3002evil.example/",  # ideographic full stop, a dot to IDNA
    "https://xn--tools-usps-com.evil.example/",
    "https://[::1]/usps.com",
    "https://127.0.0.1/usps.com",
    "https://usps.com%2eevil.example/",
    "https://evil.example/?https://tools.usps.com/",
    "https://evil.example#@tools.usps.com",
    "https://www.ups.com/track",  # another carrier's site is not this carrier's
    "",
    "   ",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_a_hostile_or_foreign_provider_link_falls_back_to_the_carriers_page(url: str) -> None:
    assert _link("usps", url) == f"https://tools.usps.com/go/TrackConfirmAction?tLabels={NUMBER}"


def test_a_carrier_without_trusted_domains_gets_no_provider_link() -> None:
    assert _link("shippo", "https://tools.usps.com/go/x") is None
    assert _link(None, "https://tools.usps.com/go/x") is None  # type: ignore[arg-type]
    assert _link("acme_freight", f"https://{EVIL}/t") is None


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_evil_host = st.lists(_label, min_size=1, max_size=3).map(lambda ls: ".".join([*ls, "example"]))
_junk = st.sampled_from(
    [
        "\t",
        "\n",
        "\r",
        "\x00",
        "\x0b",
        "\x7f",
        " ",
        "\\",
        "\u200b",
        "\u00a0",
        "\u2028",
        "%00",
        "\u0131",
        "\u0430",
        "\uff0e",
    ]
)


@st.composite
def hostile_urls(draw: st.DrawFn) -> tuple[str, str]:
    carrier = draw(st.sampled_from(CARRIERS))
    domain = draw(st.sampled_from(CARRIER_TRACKING_DOMAINS[carrier]))
    evil = draw(_evil_host)
    path = draw(st.sampled_from(["/", "/track?n=1", f"/go/TrackConfirmAction?tLabels={NUMBER}", ""]))
    official = f"https://www.{domain}{path or '/'}"
    pos = draw(st.integers(min_value=0, max_value=len(official)))
    port = draw(st.integers(min_value=0, max_value=65535))
    form = draw(st.sampled_from(range(14)))
    url = [
        f"https://{domain}.{evil}{path}",  # carrier domain as a prefix
        f"https://{draw(_label)}{domain}{path}",  # lookalike: no dot before the domain
        f"https://{domain}-{evil}{path}",
        f"https://{domain}@{evil}{path}",  # user info
        f"https://www.{domain}:{draw(_label)}@{evil}{path}",
        f"https://{evil}\\@www.{domain}{path}",  # backslash
        f"https://www.{domain}:{port}{path}",  # any port
        f"https://www.{domain}.{path}",  # trailing dot
        f"{draw(st.sampled_from(['http', 'ftp', 'javascript', 'data', 'file', 'vbscript', 'httpss']))}"
        f"://www.{domain}{path}",  # other schemes
        f"javascript:alert(1)//www.{domain}{path}",
        official[:pos] + draw(_junk) + official[pos:],  # whitespace / control / look-alike chars
        f"https://{evil}{path}",  # a random host
        f"https://{evil}/{domain}{path}",
        f"https:{'/' * draw(st.sampled_from([0, 1, 3]))}www.{domain}{path}",
    ][form]
    return carrier, url


@settings(max_examples=300, deadline=None)
@given(hostile_urls())
def test_generated_hostile_links_never_become_the_link(case: tuple[str, str]) -> None:
    carrier, url = case
    if (
        _on_carrier_site(carrier, url.strip())
        and url.strip().isascii()
        and url.strip().isprintable()
        and "\\" not in url
        and " " not in url.strip()
    ):
        return  # a junk character landed in the path/query of a genuine link: not hostile
    assert _link(carrier, url) == _fallback(carrier)
    assert (
        tracking_url(
            carrier, NUMBER, merchant_template="https://t.acme.example/{tracking_number}", provider_url=url
        )
        == f"https://t.acme.example/{NUMBER}"
    )


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([*CARRIERS, "shippo", "unknown_carrier"]),
    st.one_of(st.text(max_size=80), st.from_regex(r"https?://[^/]{0,40}/[ -~]{0,20}", fullmatch=True)),
)
def test_whatever_shippo_sends_the_link_is_the_carriers_site_or_its_page(carrier: str, url: str) -> None:
    link = _link(carrier, url)
    assert (
        link is None
        or link == _fallback(carrier)
        or (link == url.strip() and _on_carrier_site(carrier, link))
    )
    if link is not None and link != _fallback(carrier):
        assert link.isascii() and link.isprintable() and not any(c in link for c in ' \\"<>')
