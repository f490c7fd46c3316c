from __future__ import annotations

import pytest

from notifiers.links import CARRIER_NAMES, CARRIER_TRACKING_PAGES, carrier_name, tracking_url


def test_merchant_template_wins_and_is_url_quoted() -> None:
    url = tracking_url(
        "usps",
        "94 00/11",
        merchant_template="https://track.example.com/{carrier}/{tracking_number}",
        provider_url="https://tools.usps.com/x",
    )
    assert url == "https://track.example.com/usps/94%2000%2F11"


def test_provider_url_when_no_merchant_template() -> None:
    assert (
        tracking_url(
            "ups",
            "1Z999",
            merchant_template=None,
            provider_url="https://www.ups.com/track?tracknum=1Z999&x=1",
        )
        == "https://www.ups.com/track?tracknum=1Z999&x=1"
    )


def test_carrier_table_fallback() -> None:
    assert (
        tracking_url("FedEx", "7712", merchant_template="", provider_url=None)
        == "https://www.fedex.com/fedextrack/?trknbr=7712"
    )
    assert (
        tracking_url("dhl_express", "12 34", merchant_template=None, provider_url="")
        == "https://www.dhl.com/global-en/home/tracking.html?tracking-id=12%2034"
    )


def test_none_when_nothing_known() -> None:
    assert tracking_url("shippo", "SHIPPO_TRANSIT", merchant_template=None, provider_url=None) is None
    assert tracking_url("usps", None, merchant_template=None, provider_url=None) is None


def test_non_http_provider_url_is_ignored() -> None:
    assert (
        tracking_url("usps", "9400", merchant_template=None, provider_url="javascript:alert(1)")
        == "https://tools.usps.com/go/TrackConfirmAction?tLabels=9400"
    )


@pytest.mark.parametrize("carrier", sorted(CARRIER_TRACKING_PAGES))
def test_every_table_entry_has_a_name_and_a_placeholder(carrier: str) -> None:
    assert "{n}" in CARRIER_TRACKING_PAGES[carrier]
    assert carrier in CARRIER_NAMES


def test_carrier_names() -> None:
    assert carrier_name("fedex") == "FedEx"
    assert carrier_name("shippo") == "Shippo (test)"
    assert carrier_name("canada_post") == "Canada Post"
    assert carrier_name("dhl_ecommerce") == "DHL eCommerce"
    assert carrier_name("lasership") == "LaserShip"
    assert carrier_name(None) is None  # unknown: the templates say "your carrier"
    assert carrier_name("acme_freight") is None  # never a name guessed from the token
