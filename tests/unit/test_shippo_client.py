"""The Shippo client's pure parts: which tokens it takes (the whole string), how it reads
``Retry-After``, that ``next`` links never send the token to another host, and its settings."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config import Settings, SettingsError
from shippo_api.client import TOKEN, ShippoClient, _retry_after

GOOD = "shippo_test_" + "0123456789abcdef" * 2
ALNUM = string.ascii_letters + string.digits


@given(
    prefix=st.sampled_from(["shippo_live_", "shippo_test_"]), body=st.text(ALNUM, min_size=16, max_size=128)
)
@settings(max_examples=100, deadline=None)
def test_a_live_or_test_token_of_letters_and_digits_is_taken(prefix: str, body: str) -> None:
    assert TOKEN.fullmatch(prefix + body)


@given(before=st.text(max_size=4), after=st.text(max_size=4))
@settings(max_examples=200, deadline=None)
def test_anything_around_a_good_token_makes_it_refused(before: str, after: str) -> None:
    """Whole-string matching: a trailing newline, a space or a suffix is not a token."""
    candidate = before + GOOD + after
    assert bool(TOKEN.fullmatch(candidate)) == (
        all(c in ALNUM for c in after) and before == "" and len(GOOD) - 12 + len(after) <= 128
    )


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, None), ("", None), ("3", 3.0), (" 120 ", 120.0), ("-1", None), ("soon", None), ("1.5", None)],
)
def test_retry_after_is_read_as_seconds(header: str | None, seconds: float | None) -> None:
    assert _retry_after(header) == seconds


def test_retry_after_as_an_http_date_in_the_past_is_no_wait() -> None:
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


@pytest.mark.parametrize(
    ("base", "next_url", "followed"),
    [
        ("https://api.goshippo.com", "https://api.goshippo.com/webhooks?page=2", "/webhooks?page=2"),
        ("https://api.goshippo.com", "/webhooks?page=2", "/webhooks?page=2"),
        ("http://127.0.0.1:5000/shippo", "http://127.0.0.1:5000/shippo/webhooks?page=3", "/webhooks?page=3"),
        ("https://api.goshippo.com", "https://evil.example/webhooks?page=2", None),
        ("https://api.goshippo.com", "http://api.goshippo.com/webhooks?page=2", None),
        ("https://api.goshippo.com", None, None),
    ],
)
def test_next_links_are_followed_only_on_shippos_own_host(
    base: str, next_url: str | None, followed: str | None
) -> None:
    assert ShippoClient(GOOD, base_url=base)._same_host(next_url) == followed


def test_the_token_is_not_part_of_the_clients_repr() -> None:
    assert GOOD not in repr(ShippoClient(GOOD))


def test_the_shippo_settings_and_their_defaults() -> None:
    default = Settings.from_env({})
    assert (default.shippo_api_url, default.reconcile_after_h, default.shippo_rate_per_min) == (
        "https://api.goshippo.com",
        12,
        60,
    )
    custom = Settings.from_env(
        {
            "PARCELHOOK_SHIPPO_API_URL": "http://127.0.0.1:9999",
            "PARCELHOOK_RECONCILE_AFTER_H": "6",
            "PARCELHOOK_SHIPPO_RATE_PER_MIN": "10",
        }
    )
    assert (custom.shippo_api_url, custom.reconcile_after_h, custom.shippo_rate_per_min) == (
        "http://127.0.0.1:9999",
        6,
        10,
    )
    for name, value in [
        ("PARCELHOOK_SHIPPO_API_URL", "ftp://shippo"),
        ("PARCELHOOK_RECONCILE_AFTER_H", "0"),
        ("PARCELHOOK_SHIPPO_RATE_PER_MIN", "many"),
    ]:
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value})
