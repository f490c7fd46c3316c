"""Every admin list route reads ``limit`` (and a paged one ``cursor``) the same way
(``admin/paging.py``): the whole string, or a 422 naming the parameter, in the error shape
of both apps. ``int()`` alone took ``" 5"``, ``"+5"``, ``"5_0"`` and non-ASCII digits."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import System

pytestmark = pytest.mark.redis

#: route → its largest limit
LIST_ROUTES = {
    "/api/merchants/acme/orders": 500,
    "/api/outbox": 500,
    "/api/ops/dead-letters": 1000,
    "/api/ops/webhooks": 1000,
}


@pytest.fixture()
def admin(system: System) -> System:
    system.create_merchant("acme")
    return system


def _get(system: System, route: str, query: str) -> Any:
    return system.admin.get(f"{route}?{query}", headers=system.auth())


def _is_refused(response: Any, field: str) -> bool:
    body = response.get_json()
    return (
        response.status_code == 422
        and set(body) == {"error", "message", "fields"}
        and body["error"] == "invalid"
        and set(body["fields"]) == {field}
    )


LIMITS = st.one_of(
    st.text(max_size=8),
    st.text(alphabet="0123456789 +-_.e\t\n\u0665\uff15", max_size=6),
    st.integers(min_value=-5, max_value=1200).map(str),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=LIMITS)
@example(raw="5_0")
@example(raw=" 5")
@example(raw="+5")
@example(raw="\u0665")
@example(raw="5\n")
def test_a_limit_is_digits_within_the_routes_bounds_or_a_422_naming_it(admin: System, raw: str) -> None:
    for route, maximum in LIST_ROUTES.items():
        response = _get(admin, route, f"limit={quote(raw)}")
        valid = raw == "" or (re.fullmatch(r"[0-9]+", raw) is not None and 1 <= int(raw) <= maximum)
        if valid:
            assert response.status_code == 200, (route, raw, response.get_json())
        else:
            assert _is_refused(response, "limit"), (route, raw, response.get_json())


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=st.one_of(
        st.text(max_size=40),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=5),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.just("id"), inner, max_size=1),
            max_leaves=4,
        ).map(_cursor),
    )
)
@example(raw=_cursor({"id": True}))
@example(raw=_cursor({"id": 2**70}))
@example(raw=_cursor({"id": -1}))
@example(raw=_cursor({"id": 5}) + "\n")
@example(raw=_cursor({"id": 5}) + "!")
def test_a_cursor_is_one_the_api_returned_or_a_422_naming_it(admin: System, raw: str) -> None:
    response = _get(admin, "/api/merchants/acme/orders", f"cursor={quote(raw)}")
    if response.status_code == 200 and raw == "":
        return  # no cursor: the first page
    if response.status_code == 200:
        # only a cursor the API could have written: URL-safe base64 of {"id": <an order id>}
        assert re.fullmatch(r"[A-Za-z0-9_-]+", raw), raw
        padded = raw + "=" * (-len(raw) % 4)
        order_id = json.loads(base64.urlsafe_b64decode(padded))["id"]
        assert type(order_id) is int and 1 <= order_id < 2**31, raw
    else:
        assert _is_refused(response, "cursor"), (raw, response.status_code, response.get_json())


def test_a_listing_with_several_problems_names_them_all(admin: System) -> None:
    response = _get(admin, "/api/merchants/acme/orders", "status=lost&limit=0&cursor=%21")
    assert response.status_code == 422
    assert set(response.get_json()["fields"]) == {"status", "limit", "cursor"}
