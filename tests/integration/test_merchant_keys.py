"""Merchant API keys (docs/api.md, *Merchant keys*): a key of merchant A sees and changes A only.

The cross-merchant test walks EVERY rule of the admin app's ``url_map`` (so a route added
tomorrow is walked too) with a key of A, aimed at merchant B's data and at the admin-only
routes, by bearer token and by the merchant page's session cookie, on SQLite and PostgreSQL:
admin-only routes answer 403, B's routes 404 (exactly what an unknown merchant gets), and B's
data is unchanged afterwards. A throwaway route that forgets its scope is refused.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient

from admin.scopes import Declaration, Scope, declaration
from store import keys as key_store
from store.database import utcnow
from tests.fixtures.shippo import scenario
from tests.integration.conftest import System, hmac_secret
from tests.support.json_values import json_object

pytestmark = pytest.mark.redis

#: A body for every write: whatever a route would accept, the scope check refuses first.
HIJACK_BODY: dict[str, Any] = {
    "name": "Hijacked",
    "text": "hijacked {{ order.ref }}",
    "subject": "hijacked",
    "customer": {"email": "thief@example.com"},
    "carrier": "usps",
    "tracking_number": "9205590164917312751089",
    "queue": "events",
    "all": True,
    "label": "thief",
}
IGNORED_METHODS = {"HEAD", "OPTIONS"}
#: What a merchant key gets, by the route's declared scope (None: declared nothing).
REFUSAL: dict[Scope | None, tuple[int, str]] = {
    Scope.ADMIN: (403, "forbidden"),
    Scope.MERCHANT: (404, "not_found"),
    Scope.MERCHANT_FILTERED: (404, "not_found"),
    None: (403, "forbidden"),
}


@dataclass(frozen=True)
class Two:
    """Merchants A and B, each with an order, a template and a key."""

    a: str
    b: str
    key_a: str
    key_b_id: int


def _slug(letter: str) -> str:
    return f"keys-{letter}-{secrets.token_hex(3)}"


def create_key(system: System, slug: str, label: str | None = None) -> dict[str, Any]:
    body = {} if label is None else {"label": label}
    response = system.admin.post(f"/api/merchants/{slug}/keys", json=body, headers=system.auth())
    assert response.status_code == 201, response.get_json()
    return json_object(response.get_json())


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture()
def two(system: System) -> Two:
    a, b = _slug("a"), _slug("b")
    for slug, ref in ((a, "1001"), (b, "2001")):
        system.create_merchant(slug, order_ref_pattern=r"Order (\d+)")
        system.register_order(ref, email=f"customer@{slug}.example", merchant=slug)
        saved = system.admin.put(
            f"/api/merchants/{slug}/templates/shipped/sms",
            json={"text": f"{slug} shipped"},
            headers=system.auth(),
        )
        assert saved.status_code == 201, saved.get_json()
    return Two(a, b, create_key(system, a)["key"], int(create_key(system, b)["id"]))


def _path(rule_text: str, values: dict[str, str]) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: quote(values.get(m.group(1), "1"), safe=""), rule_text)


@dataclass(frozen=True)
class Answer:
    method: str
    path: str
    endpoint: str
    declared: Declaration | None
    status: int
    error: str | None


def walk(
    app: Flask, client: FlaskClient, headers: dict[str, str], values: dict[str, str]
) -> Iterator[Answer]:
    """Every method of every rule of ``app`` (open routes left out), aimed at ``values``."""
    for rule in app.url_map.iter_rules():
        declared = declaration(app, rule.endpoint)
        if declared is not None and declared.scope is Scope.OPEN:
            continue
        for method in sorted((rule.methods or set()) - IGNORED_METHODS):
            path = _path(rule.rule, values) + f"?merchant={values['slug']}&email=customer@example.com"
            body = HIJACK_BODY if method in ("POST", "PUT", "DELETE") else None
            response = client.open(path, method=method, json=body, headers=headers)
            parsed = response.get_json(silent=True)
            error = parsed.get("error") if isinstance(parsed, dict) else None
            yield Answer(method, path, rule.endpoint, declared, response.status_code, error)


def _refused_wrongly(answers: list[Answer]) -> list[str]:
    return [
        f"{a.method} {a.path} ({a.endpoint}): {a.status} {a.error}, expected {REFUSAL[a.declared.scope if a.declared else None]}"
        for a in answers
        if (a.status, a.error) != REFUSAL[a.declared.scope if a.declared else None]
    ]


def _csrf(client: FlaskClient, slug: str) -> str:
    page = client.get(f"/m/{slug}")
    assert page.status_code == 200
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.get_data(as_text=True))
    assert found
    return found.group(1)


def _b_values(two: Two) -> dict[str, str]:
    return {
        "slug": two.b,
        "ref": "2001",
        "kind": "shipped",
        "channel": "sms",
        "key_id": str(two.key_b_id),
        "filename": "ops.css",
    }


def _b_is_untouched(system: System, two: Two) -> None:
    admin = system.auth()
    merchant = json_object(system.admin.get(f"/api/merchants/{two.b}", headers=admin).get_json())
    assert merchant["name"] == two.b.title() + " Inc"
    assert system.order("2001", merchant=two.b)["customer"]["email"] == f"customer@{two.b}.example"
    template = system.admin.get(f"/api/merchants/{two.b}/templates/shipped/sms", headers=admin).get_json()
    assert template["text"] == f"{two.b} shipped"
    [key] = system.admin.get(f"/api/merchants/{two.b}/keys", headers=admin).get_json()["keys"]
    assert key["revoked_at"] is None


@pytest.mark.parametrize("how", ["bearer", "session"])
def test_a_key_of_a_reaches_nothing_of_b_and_no_admin_route(system: System, two: Two, how: str) -> None:
    app = system.admin_app
    client = app.test_client()
    if how == "bearer":
        headers = bearer(two.key_a)
    else:  # the merchant page's sign-in: a session cookie and its CSRF header
        signed_in = client.post(f"/m/{two.a}/login", data={"key": two.key_a})
        assert signed_in.status_code == 302
        headers = {"X-Parcelhook-CSRF": _csrf(client, two.a)}
    answers = list(walk(app, client, headers, _b_values(two)))

    scopes = {a.declared.scope for a in answers if a.declared}
    assert scopes == {Scope.ADMIN, Scope.MERCHANT, Scope.MERCHANT_FILTERED}
    assert len(answers) >= 30, "the walk met (almost) no routes: it would prove nothing"
    assert [a.endpoint for a in answers if a.declared is None] == [], "a route forgot its @scope(...)"
    assert _refused_wrongly(answers) == []
    # the 404 is the very answer of a merchant that does not exist: a key cannot probe for merchants
    as_b = client.get(f"/api/merchants/{two.b}/orders", headers=headers).get_json()
    as_nobody = client.get("/api/merchants/no-such-merchant/orders", headers=headers).get_json()
    assert as_b["message"].replace(two.b, "X") == as_nobody["message"].replace("no-such-merchant", "X")
    _b_is_untouched(system, two)


def test_the_same_walk_refuses_a_throwaway_route_that_forgets_its_scope(system: System, two: Two) -> None:
    from admin.app import create_app
    from admin.services import Services

    app = create_app(
        system.settings,
        services=Services.from_settings(system.settings, system.database, system.broker.client),
        broker=system.broker,
    )

    def throwaway(slug: str) -> dict[str, str]:
        return {"served": slug}

    app.add_url_rule("/api/merchants/<slug>/throwaway", "throwaway", throwaway, methods=["GET", "POST"])
    client = app.test_client()
    answers = list(walk(app, client, bearer(two.key_a), _b_values(two)))
    forgotten = [a for a in answers if a.endpoint == "throwaway"]
    assert [(a.method, a.status, a.error) for a in forgotten] == [
        ("GET", 403, "forbidden"),
        ("POST", 403, "forbidden"),
    ]
    assert _refused_wrongly(answers) == []
    # fails closed: not even the admin token, nor a key on its own merchant, gets through
    for headers, slug in ((system.auth(), two.b), (bearer(two.key_a), two.a)):
        response = client.get(f"/api/merchants/{slug}/throwaway", headers=headers)
        assert response.status_code == 403
        assert "declares no scope" in response.get_json()["message"]


def test_a_key_of_a_works_on_a_own_routes(system: System, two: Two) -> None:
    key = bearer(two.key_a)
    a = two.a
    # the merchant's settings, but not its credentials
    assert system.admin.get(f"/api/merchants/{a}", headers=key).status_code == 200
    changed = system.admin.put(
        f"/api/merchants/{a}", json={"support_url": "https://help.example"}, headers=key
    )
    assert changed.status_code == 200 and changed.get_json()["support_url"] == "https://help.example"
    for field, value in (("hmac_secrets", [hmac_secret()]), ("shippo_api_token", "shippo_test_" + "a" * 40)):
        refused = system.admin.put(f"/api/merchants/{a}", json={"name": "A", field: value}, headers=key)
        assert refused.status_code == 403, refused.get_json()
        assert field in refused.get_json()["message"] and field in refused.get_json()["fields"]
    assert system.admin.post(f"/api/merchants/{a}/rotate-token", headers=key).status_code == 403
    assert system.admin.get(f"/api/merchants/{a}", headers=key).get_json()["name"] == a.title() + " Inc"
    assert system.admin.post(f"/api/merchants/{a}/keys", json={}, headers=key).status_code == 403
    # orders
    put = system.admin.put(f"/api/merchants/{a}/orders/1009", json={"customer": {"name": "Kim"}}, headers=key)
    assert put.status_code == 201, put.get_json()
    assert system.admin.get(f"/api/merchants/{a}/orders/1009", headers=key).get_json()["ref"] == "1009"
    listed = system.admin.get(f"/api/merchants/{a}/orders", headers=key).get_json()["orders"]
    assert {o["ref"] for o in listed} == {"1001", "1009"}
    # templates
    base = f"/api/merchants/{a}/templates/delivered/sms"
    assert system.admin.put(base, json={"text": "Here: {{ order.ref }}"}, headers=key).status_code == 201
    assert system.admin.get(base, headers=key).get_json()["source"] == "merchant"
    preview = system.admin.post(base + "/preview", json={}, headers=key)
    assert preview.status_code == 200 and preview.get_json()["text"].startswith("Here: ")
    assert system.admin.delete(base, headers=key).get_json()["deleted"] is True


def test_the_outbox_and_webhook_log_of_a_key_show_its_merchant_only(system: System, two: Two) -> None:
    system.register_order("1001", email=f"customer@{two.b}.example", merchant=two.b)  # the samples' order
    system.start_worker()
    for slug in (two.a, two.b):
        merchant = system.admin.get(f"/api/merchants/{slug}", headers=system.auth()).get_json()
        for body in scenario("delivered"):
            assert system.post(merchant, body).get_json()["status"] == "queued"
    system.drain()
    key = bearer(two.key_a)

    everyone = system.admin.get("/api/outbox", headers=system.auth()).get_json()["messages"]
    assert {m["to"] for m in everyone} >= {f"customer@{two.a}.example", f"customer@{two.b}.example"}
    mine = system.admin.get("/api/outbox", headers=key).get_json()["messages"]
    assert mine and {m["to"] for m in mine} == {f"customer@{two.a}.example"}
    assert system.admin.get(f"/api/outbox?merchant={two.a}", headers=key).get_json()["messages"] == mine
    assert system.admin.get(f"/api/outbox?merchant={two.b}", headers=key).status_code == 404

    logged = system.admin.get("/api/ops/webhooks", headers=system.auth()).get_json()["deliveries"]
    assert {two.a, two.b} <= {d["merchant"] for d in logged}
    log_a = system.admin.get("/api/ops/webhooks", headers=key).get_json()["deliveries"]
    assert len(log_a) == len(scenario("delivered")) and {d["merchant"] for d in log_a} == {two.a}
    assert system.admin.get(f"/api/ops/webhooks?merchant={two.b}", headers=key).status_code == 404

    overview = system.admin.get(f"/api/merchants/{two.a}/overview", headers=key).get_json()
    [order] = overview["orders"]
    assert order["ref"] == "1001" and order["shipments"][0]["status"] == "delivered"
    # "delivered" always goes out; "shipped" may be superseded when the worker's threads reach the
    # delivered scan first (never stale), so it is not asserted
    assert "delivered" in {n["kind"] for n in overview["notifications"]}


def test_keys_are_created_listed_and_revoked_and_a_revoked_key_gets_401(system: System, two: Two) -> None:
    created = create_key(system, two.a, label="warehouse")
    key = created["key"]
    assert re.fullmatch(r"phk_[A-Za-z0-9_-]{43}", key)
    assert created["id"] and created["prefix"] == key[:12] and created["label"] == "warehouse"
    listed = system.admin.get(f"/api/merchants/{two.a}/keys", headers=system.auth()).get_json()["keys"]
    assert [k["label"] for k in listed] == [None, "warehouse"]
    assert all(
        set(k) == {"id", "label", "prefix", "created_at", "last_used_at", "revoked_at"} for k in listed
    )
    assert key not in str(listed)

    # a session signed in with the key ends with it too
    page = system.admin_app.test_client()
    assert page.post(f"/m/{two.a}/login", data={"key": key}).status_code == 302
    assert page.get(f"/api/merchants/{two.a}/overview").status_code == 200
    assert system.admin.get(f"/api/merchants/{two.a}/orders", headers=bearer(key)).status_code == 200

    # another merchant's key id on this merchant's path is as unknown as a key that does not exist
    other = system.admin.delete(f"/api/merchants/{two.a}/keys/{two.key_b_id}", headers=system.auth())
    assert other.status_code == 404
    revoked = system.admin.delete(f"/api/merchants/{two.a}/keys/{created['id']}", headers=system.auth())
    assert revoked.status_code == 200 and revoked.get_json()["revoked_at"]
    after = system.admin.get(f"/api/merchants/{two.a}/orders", headers=bearer(key))
    assert after.status_code == 401 and after.get_json()["error"] == "unauthorized"
    assert page.get(f"/api/merchants/{two.a}/overview").status_code == 401
    assert system.admin.get(f"/api/merchants/{two.a}/orders", headers=bearer(two.key_a)).status_code == 200
    bad = system.admin.post(f"/api/merchants/{two.a}/keys", json={"label": "x" * 201}, headers=system.auth())
    assert bad.status_code == 422 and "label" in bad.get_json()["fields"]


def test_the_key_is_stored_as_its_digest_and_its_use_is_recorded_at_most_once_a_minute(
    system: System, two: Two
) -> None:
    from store.schema import merchant_keys

    with system.database.read() as conn:
        digests = [r.digest for r in conn.execute(merchant_keys.select())]
    assert key_store.digest(two.key_a) in digests and two.key_a not in str(digests)

    def last_used() -> Any:
        with system.database.read() as conn:
            return (
                conn.execute(
                    merchant_keys.select().where(merchant_keys.c.digest == key_store.digest(two.key_a))
                )
                .one()
                .last_used_at
            )

    assert last_used() is None
    t0 = utcnow()
    assert key_store.authenticate(system.database, two.key_a, now=t0) is not None
    assert last_used() == t0
    key_store.authenticate(system.database, two.key_a, now=t0 + timedelta(seconds=59))
    assert last_used() == t0, "a second use within the minute is no write"
    key_store.authenticate(system.database, two.key_a, now=t0 + timedelta(seconds=61))
    assert last_used() == t0 + timedelta(seconds=61)
    assert key_store.authenticate(system.database, "phk_" + "x" * 43) is None
