"""Merchants through the admin API (docs/api.md, Merchants): create, update, read, list, rotate, 422s."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.conftest import System, hmac_secret

pytestmark = pytest.mark.redis


def _put(system: System, slug: str, body: Any) -> Any:
    return system.admin.put(f"/api/merchants/{slug}", json=body, headers=system.auth())


def test_put_creates_then_updates_and_get_never_shows_hmac_secrets(system: System) -> None:
    secret = hmac_secret()
    created = _put(
        system,
        "acme",
        {
            "name": "Acme Inc",
            "email_from": "shop@acme.example",
            "sms_from": "+14155550100",
            "timezone": "America/New_York",
            "sms_quiet_hours": "21:00-08:00",
            "order_ref_pattern": r"Order (\d+)",
            "notify": {"email": ["shipped", "delivered"], "sms": ["out_for_delivery"]},
            "tracking_url_template": "https://track.acme.example/{carrier}/{tracking_number}",
            "hmac_secrets": [secret],
        },
    )
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert (body["slug"], body["name"], body["timezone"], body["default_locale"]) == (
        "acme",
        "Acme Inc",
        "America/New_York",
        "en",
    )
    assert (
        body["webhook_url"]
        == f"{system.settings.public_url}/webhooks/shippo/acme?token={body['webhook_token']}"
    )
    assert body["hmac_secrets_configured"] == 1 and "hmac_secrets" not in body
    updated = _put(system, "acme", {"default_locale": "es", "sms_quiet_hours": None})
    assert updated.status_code == 200
    got = system.admin.get("/api/merchants/acme", headers=system.auth())
    assert got.status_code == 200
    merchant = got.get_json()
    assert (merchant["name"], merchant["default_locale"], merchant["sms_quiet_hours"]) == (
        "Acme Inc",
        "es",
        None,
    )
    assert merchant["timezone"] == "America/New_York", "fields not given are kept"
    assert merchant["webhook_token"] == body["webhook_token"]
    listed = system.admin.get("/api/merchants", headers=system.auth()).get_json()["merchants"]
    assert [m["slug"] for m in listed] == ["acme"]
    for text in (got.get_data(as_text=True), json.dumps(listed)):
        assert secret not in text


def test_listing_is_sorted_and_unknown_merchants_are_404(system: System) -> None:
    for slug in ("zeta", "acme", "mid-co"):
        system.create_merchant(slug)
    listed = system.admin.get("/api/merchants", headers=system.auth()).get_json()["merchants"]
    assert [m["slug"] for m in listed] == ["acme", "mid-co", "zeta"]
    assert system.admin.get("/api/merchants/ghost", headers=system.auth()).status_code == 404
    assert system.admin.post("/api/merchants/ghost/rotate-token", headers=system.auth()).status_code == 404


@pytest.mark.parametrize(
    "slug, body, field",
    [
        ("Bad_Slug", {"name": "x"}, "slug"),
        ("-dash", {"name": "x"}, "slug"),
        ("acme", {}, "name"),
        ("acme", {"name": "x", "timezone": "Mars/Olympus"}, "timezone"),
        ("acme", {"name": "x", "sms_quiet_hours": "9pm-8am"}, "sms_quiet_hours"),
        ("acme", {"name": "x", "sms_quiet_hours": "25:00-08:00"}, "sms_quiet_hours"),
        ("acme", {"name": "x", "order_ref_pattern": r"Order \d+"}, "order_ref_pattern"),
        ("acme", {"name": "x", "order_ref_pattern": r"(Order) (\d+)"}, "order_ref_pattern"),
        ("acme", {"name": "x", "order_ref_pattern": r"Order (\d+"}, "order_ref_pattern"),
        ("acme", {"name": "x", "notify": {"email": ["shipped", "teleported"]}}, "notify"),
        ("acme", {"name": "x", "notify": {"pigeon": ["shipped"]}}, "notify"),
        ("acme", {"name": "x", "email_from": "nope"}, "email_from"),
        ("acme", {"name": "x", "sms_from": "0415"}, "sms_from"),
        ("acme", {"name": "x", "default_locale": "english"}, "default_locale"),
        ("acme", {"name": "x", "hmac_secrets": ["short"]}, "hmac_secrets"),
        (
            "acme",
            {"name": "x", "tracking_url_template": "https://t.example/{order}"},
            "tracking_url_template",
        ),
        ("acme", {"name": "x", "color": "red"}, "color"),
    ],
)
def test_invalid_merchant_fields_are_422_with_the_field_named(
    system: System, slug: str, body: dict[str, Any], field: str
) -> None:
    response = _put(system, slug, body)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["fields"]
    assert system.admin.get("/api/merchants", headers=system.auth()).get_json()["merchants"] == []


def test_all_field_errors_come_in_one_answer(system: System) -> None:
    response = _put(system, "acme", {"name": "x", "timezone": "Nowhere", "sms_quiet_hours": "x", "color": 1})
    assert set(response.get_json()["fields"]) == {"timezone", "sms_quiet_hours", "color"}


def test_rotate_token_keeps_the_old_token_working_at_the_receiver(system: System) -> None:
    merchant = system.create_merchant()
    old = merchant["webhook_token"]
    rotated = system.admin.post("/api/merchants/acme/rotate-token", headers=system.auth())
    assert rotated.status_code == 200
    new = rotated.get_json()
    assert new["webhook_token"] != old and new["previous_token_valid_until"]
    assert old not in new["webhook_url"]
    from tests.fixtures.shippo import raw

    assert system.post(new, raw("track_updated_transit.json")).status_code == 200
    assert system.post(new, raw("track_updated_delivered.json"), token=old).status_code == 200
    assert system.post(new, raw("track_updated_delivered.json"), token="wrong").status_code == 401


def test_the_merchants_api_wants_the_bearer_token(system: System) -> None:
    assert system.admin.get("/api/merchants").status_code == 401
    assert system.admin.put("/api/merchants/acme", json={"name": "x"}).status_code == 401
    assert system.admin.post("/api/merchants/acme/rotate-token").status_code == 401
