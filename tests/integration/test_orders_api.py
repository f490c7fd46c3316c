"""The orders API (docs/api.md, Orders): registration with field errors, reads, filtered keyset listing,
and the query plans that keep the listing fast for a million orders."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa

from store.database import utcnow
from store.schema import orders
from tests.integration.conftest import System

pytestmark = pytest.mark.redis


@pytest.fixture()
def acme(system: System) -> dict[str, Any]:
    return system.create_merchant()


def _put(system: System, ref: str, body: Any) -> Any:
    return system.admin.put(f"/api/merchants/acme/orders/{ref}", json=body, headers=system.auth())


def test_an_order_put_validates_every_field_and_answers_422_with_field_errors(
    system: System, acme: dict[str, Any]
) -> None:
    response = _put(
        system,
        "1001",
        {
            "customer": {
                "email": "not-an-email",
                "phone": "415-555-0123",
                "locale": "english",
                "timezone": "Mars/Olympus",
                "age": 3,
            },
            "notify": {"email": "yes", "sms": 1},
            "extra": True,
        },
    )
    assert response.status_code == 422
    fields = response.get_json()["fields"]
    assert set(fields) == {
        "customer.email",
        "customer.phone",
        "customer.locale",
        "customer.timezone",
        "customer.age",
        "notify.email",
        "notify.sms",
        "extra",
    }, fields
    assert "E.164" in fields["customer.phone"]
    assert fields["customer.age"] == fields["extra"] == "unknown field"
    bad: object
    for bad in ([], "x", {"customer": "jane"}, {"notify": {"push": True}}):
        assert _put(system, "1001", bad).status_code == 422, bad
    no_json = system.admin.put("/api/merchants/acme/orders/1001", data="x", headers=system.auth())
    assert no_json.status_code == 422
    long_ref = _put(system, "r" * 201, {})
    assert long_ref.status_code == 422 and "order_ref" in long_ref.get_json()["fields"]
    assert system.admin.get("/api/merchants/acme/orders/1001", headers=system.auth()).status_code == 404


def test_a_valid_order_is_created_then_updated(system: System, acme: dict[str, Any]) -> None:
    body = {
        "customer": {
            "name": "Jane Doe",
            "email": "jane@example.com",
            "phone": "+14155550123",
            "locale": "es-MX",
            "timezone": "America/Mexico_City",
        },
        "notify": {"email": True, "sms": True},
    }
    created = _put(system, "A/1001", body)  # refs may contain slashes
    assert created.status_code == 201, created.get_json()
    order = created.get_json()
    assert (order["ref"], order["status"], order["registered"]) == ("A/1001", "awaiting_shipment", True)
    assert order["customer"] == body["customer"] and order["notify"] == {"email": True, "sms": True}
    assert order["shipments"] == [] and order["notifications"] == []
    updated = _put(system, "A/1001", {"customer": {"email": "jane@example.org"}, "notify": {"sms": False}})
    assert updated.status_code == 200
    assert updated.get_json()["customer"] == {"email": "jane@example.org"}
    assert updated.get_json()["notify"] == {"email": True, "sms": False}
    got = system.admin.get("/api/merchants/acme/orders/A/1001", headers=system.auth())
    assert got.status_code == 200 and got.get_json()["customer"]["email"] == "jane@example.org"


def test_unknown_orders_and_merchants_are_404(system: System, acme: dict[str, Any]) -> None:
    auth = system.auth()
    assert system.admin.get("/api/merchants/acme/orders/nope", headers=auth).status_code == 404
    assert system.admin.get("/api/merchants/ghost/orders/1", headers=auth).status_code == 404
    assert system.admin.get("/api/merchants/ghost/orders", headers=auth).status_code == 404
    missing = system.admin.put("/api/merchants/ghost/orders/1", json={}, headers=auth)
    assert missing.status_code == 404 and missing.get_json()["error"] == "not_found"


def test_the_orders_api_wants_the_bearer_token(system: System, acme: dict[str, Any]) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp4"}):
        assert system.admin.get("/api/merchants/acme/orders", headers=headers).status_code == 401
        assert system.admin.get("/api/merchants/acme/orders/1", headers=headers).status_code == 401
        put = system.admin.put("/api/merchants/acme/orders/1", json={}, headers=headers)
        assert put.status_code == 401
    with system.database.read() as conn:
        assert conn.execute(orders.select()).first() is None, "nothing written without the token"


def _order_row(
    merchant_id: int, ref: str, status: str, at: datetime, exception: str | None = None
) -> dict[str, Any]:
    """An ``orders`` row registered for email only, created and updated ``at``."""
    return {
        "merchant_id": merchant_id,
        "ref": ref,
        "status": status,
        "exception": exception,
        "customer": {},
        "notify_email": True,
        "notify_sms": False,
        "registered": True,
        "created_at": at,
        "updated_at": at,
    }


def _seed(system: System, merchant_id: int, count: int) -> None:
    statuses = ["shipped", "delivered", "exception"]
    rows = []
    now = utcnow()
    for n in range(count):
        status = statuses[n % 3]
        rows.append(
            _order_row(merchant_id, f"R{n:04d}", status, now, "delayed" if status == "exception" else None)
        )
    with system.database.write() as conn:
        conn.execute(orders.insert(), rows)


def _merchant_id(system: System, slug: str = "acme") -> int:
    from store import merchants as merchant_store

    with system.database.read() as conn:
        return merchant_store.require(conn, slug).id


def _walk(system: System, query: str) -> tuple[list[str], int]:
    refs: list[str] = []
    pages = 0
    cursor = None
    while True:
        url = f"/api/merchants/acme/orders?{query}" + (f"&cursor={cursor}" if cursor else "")
        response = system.admin.get(url, headers=system.auth())
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        refs.extend(o["ref"] for o in body["orders"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return refs, pages


def test_listing_filters_and_paginates_with_a_cursor(system: System, acme: dict[str, Any]) -> None:
    _seed(system, _merchant_id(system), 120)
    system.create_merchant("other")
    _seed(system, _merchant_id(system, "other"), 5)  # never leaks into acme's list

    refs, pages = _walk(system, "limit=25")
    assert pages == 5 and refs == [f"R{n:04d}" for n in reversed(range(120))]
    delivered, pages = _walk(system, "status=delivered&limit=15")
    assert pages == 3 and delivered == [f"R{n:04d}" for n in reversed(range(120)) if n % 3 == 1]
    delayed, _ = _walk(system, "exception=delayed&limit=500")
    assert delayed == [f"R{n:04d}" for n in reversed(range(120)) if n % 3 == 2]
    both, _ = _walk(system, "status=exception&exception=delayed")
    assert both == delayed
    none, pages = _walk(system, "exception=lost")
    assert none == [] and pages == 1
    default = system.admin.get("/api/merchants/acme/orders", headers=system.auth()).get_json()
    assert len(default["orders"]) == 50 and default["next_cursor"]
    assert set(default["orders"][0]) >= {"ref", "status", "exception", "registered", "customer", "notify"}


@pytest.mark.parametrize(
    "query, field",
    [
        ("status=lost", "status"),
        ("exception=shipped", "exception"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=eyJpZCI6ICJ4In0", "cursor"),  # {"id": "x"}
        ("cursor=W10", "cursor"),  # []
    ],
)
def test_bad_list_parameters_are_422(system: System, acme: dict[str, Any], query: str, field: str) -> None:
    response = system.admin.get(f"/api/merchants/acme/orders?{query}", headers=system.auth())
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["fields"]


def test_the_list_queries_are_served_by_the_merchant_indexes(system: System, acme: dict[str, Any]) -> None:
    """Evidence for "indexed for a million orders": the planner picks the composite index."""
    db = system.database
    merchant_id = _merchant_id(system)
    statuses = ["shipped", "delivered", "exception", "in_transit", "returned", "partially_shipped"]
    now = utcnow()
    for m in range(1, 5):
        system.create_merchant(f"bulk{m}")
    ids = [merchant_id] + [_merchant_id(system, f"bulk{m}") for m in range(1, 5)]
    system.create_merchant("tiny")
    tiny = _merchant_id(system, "tiny")
    with db.write() as conn:
        # a tiny merchant whose few orders are the oldest: a primary-key walk would read everything
        conn.execute(
            orders.insert(),
            [_order_row(tiny, f"T{n}", "shipped", now) for n in range(30)],
        )
        conn.execute(
            orders.insert(),
            [
                # acme is a small merchant among big ones: 1 order in 50
                _order_row(ids[0] if n % 50 == 0 else ids[1 + n % 4], f"B{n}", statuses[(n // 50) % 6], now)
                for n in range(30_000)
            ],
        )
    filtered = (
        sa.select(orders)
        .where(orders.c.merchant_id == merchant_id, orders.c.status == "delivered", orders.c.id < 25_000)
        .order_by(orders.c.id.desc())
        .limit(51)
    )
    unfiltered = (
        sa.select(orders)
        .where(orders.c.merchant_id == tiny, orders.c.id < 25_000)
        .order_by(orders.c.id.desc())
        .limit(51)
    )
    with db.write() as conn:
        conn.exec_driver_sql("ANALYZE" if db.is_sqlite else "ANALYZE orders")
    # the busy filter must come back in index order; the tiny merchant's few rows may be fetched
    # by a bitmap scan of the index and sorted (25 rows) — either way no sequential scan.
    for query, index, ordered in (
        (filtered, "ix_orders_merchant_status", True),
        (unfiltered, "ix_orders_merchant", False),
    ):
        with db.read() as conn:
            compiled = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            if db.is_sqlite:
                plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
                assert re.search(rf"\b{index}\b", plan), plan
                assert "TEMP B-TREE" not in plan, f"no sort step: the index gives the order ({plan})"
            else:
                plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {compiled}"))
                assert re.search(rf"(Index Scan Backward using|Bitmap Index Scan on) {index}\b", plan), plan
                assert "Seq Scan" not in plan, plan
                if ordered:
                    assert "Sort" not in plan, plan
