"""The OpenAPI document (``GET /api/openapi.json`` on the admin app, ``admin/openapi.py``) tells
the truth about both apps:

- every route either app registers is in it, and nothing else (the apps' own url_maps are walked,
  so a route added tomorrow fails here until it is described);
- schemathesis generates requests from it against the real admin app (SQLite, real Redis broker,
  a seeded merchant with a key), and every answer is neither a 5xx nor outside the documented
  status codes, media types and JSON schemas.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from admin.openapi import ADMIN, RECEIVER
from tests.integration.conftest import System
from tests.integration.test_merchant_keys import bearer, create_key
from tests.support.json_values import json_object

pytestmark = pytest.mark.redis

DOCUMENT = "/api/openapi.json"
IMPLIED_METHODS = {"HEAD", "OPTIONS"}
SLUG = "acme"
#: examples per operation (valid and invalid): about 40 operations, the whole run well under a
#: minute; set PARCELHOOK_OPENAPI_EXAMPLES higher to explore longer by hand
EXAMPLES = int(os.environ.get("PARCELHOOK_OPENAPI_EXAMPLES", "30"))
#: what every answer must satisfy: no 5xx; only the documented codes, media types and bodies; and a
#: request the document forbids (negative generation) is refused with a 4xx
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture()
def system(make_system: Callable[..., System], sqlite_url: str) -> System:
    built = make_system(sqlite_url)
    built.create_merchant(SLUG, email_from="shipping@acme.example", test_phone="+14155550100")
    built.register_order("1001")
    return built


def _routes(app: Flask) -> set[str]:
    """``"METHOD /path"`` for every rule that serves something (OpenAPI's ``{name}`` for ``<x:name>``)."""
    routes: set[str] = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" and not (app.static_folder and os.path.isdir(app.static_folder)):
            continue  # the receiver's: it has no static folder, so the rule can serve nothing
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        routes.update(f"{method} {path}" for method in (rule.methods or set()) - IMPLIED_METHODS)
    return routes


def _documented(document: dict[str, Any], *, receiver: bool) -> set[str]:
    return {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        if ("servers" in item) is receiver
        for method in item
        if method in {"get", "put", "post", "patch", "delete"}
    }


def _document(system: System) -> dict[str, Any]:
    response = system.admin.get(DOCUMENT, headers=system.auth())
    assert response.status_code == 200, response.get_data(as_text=True)
    return json_object(response.get_json())


@pytest.mark.parametrize("which", ["admin", "receiver"])
def test_the_document_lists_every_route_of_the_app_and_nothing_else(system: System, which: str) -> None:
    app = system.admin_app if which == "admin" else system.web.application
    assert isinstance(app, Flask)
    registered = _routes(app)
    assert len(registered) >= (40 if which == "admin" else 7), "no routes found: the test would prove nothing"
    documented = _documented(_document(system), receiver=which == "receiver")
    assert sorted(registered - documented) == [], (
        f"routes of {which} missing from {DOCUMENT} (admin/openapi.py)"
    )
    assert sorted(documented - registered) == [], f"{DOCUMENT} lists routes {which} does not have"


@pytest.mark.parametrize("which", ["admin", "receiver"])
def test_every_description_belongs_to_an_endpoint(system: System, which: str) -> None:
    """A description whose endpoint was renamed or removed is stale, not silently unused."""
    app = system.admin_app if which == "admin" else system.web.application
    assert isinstance(app, Flask)
    table = ADMIN if which == "admin" else RECEIVER
    assert sorted(set(table) - set(app.view_functions)) == []


def test_a_route_added_without_a_description_is_missing_from_the_document(system: System) -> None:
    """The url_map walk above can fail: an undescribed route stays out of the document."""
    from admin.app import create_app

    app = create_app(system.settings, services=system.services, broker=system.dramatiq_broker)
    app.add_url_rule("/api/merchants/<slug>/forgotten", "forgotten", lambda slug: "")
    served = app.test_client().get(DOCUMENT, headers=system.auth())
    documented = _documented(json_object(served.get_json()), receiver=False)
    assert sorted(_routes(app) - documented) == ["GET /api/merchants/{slug}/forgotten"]


def test_the_document_needs_a_caller_and_any_key_may_read_it(system: System) -> None:
    assert system.admin.get(DOCUMENT).status_code == 401
    key = create_key(system, SLUG)["key"]
    by_key = system.admin.get(DOCUMENT, headers=bearer(key))
    assert by_key.status_code == 200
    assert by_key.get_json() == _document(system), "the document is the same for every caller"


Operation = schemathesis.APIOperation[Any, Any, Any, Any]


def _strategy(operation: Operation) -> st.SearchStrategy[schemathesis.Case[Any]]:
    """Generated cases, valid and invalid, half of them aimed at the seeded merchant (a random slug
    is a 404 only)."""
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    strategies = [operation.as_strategy(mode) for mode in modes]
    if "{slug}" in operation.path:
        strategies += [operation.as_strategy(mode, path_parameters={"slug": SLUG}) for mode in modes]
    return st.one_of(strategies)


def _explore(operation: Operation, auth: dict[str, str], answered: set[int]) -> str | None:
    """Run the checks on ``EXAMPLES`` generated requests; what schemathesis found, if anything."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        database=None,
    )
    @given(case=_strategy(operation))
    def run(case: schemathesis.Case[Any]) -> None:
        response = case.call(headers=auth)
        answered.add(response.status_code)
        case.validate_response(response, checks=CHECKS, headers=auth)

    try:
        run()
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis raises a group of its failures
        return str(exc)[:3000]
    return None


def test_schemathesis_finds_the_admin_app_as_documented(system: System) -> None:
    schema = schemathesis.openapi.from_wsgi(DOCUMENT, system.admin_app, headers=system.auth())
    operations = [
        result.ok()
        for result in schema.get_all_operations()
        if isinstance(result, Ok) and "receiver" not in (result.ok().definition.raw.get("tags") or [])
    ]
    assert len(operations) >= 40, "the admin operations were not found: the test would prove nothing"
    started = time.monotonic()
    answered: dict[str, set[int]] = {operation.label: set() for operation in operations}
    failures = {
        operation.label: found
        for operation in operations
        if (found := _explore(operation, system.auth(), answered[operation.label])) is not None
    }
    print(f"schemathesis: {len(operations)} operations in {time.monotonic() - started:.1f} s; {answered}")
    assert not failures, "\n\n".join(f"{label}:\n{problem}" for label, problem in failures.items())
    # the seeded merchant was reached: its routes did not all end at the 404 of unknown merchants
    assert 200 in answered["GET /api/merchants/{slug}/orders"], answered
    assert 201 in answered["PUT /api/merchants/{slug}/orders/{ref}"], answered


def test_a_key_id_beyond_the_column_is_a_404_on_both_databases(
    make_system: Callable[..., System], database_url: str
) -> None:
    """Found by schemathesis: ``DELETE …/keys/19064033933926802128896`` was a 500 (SQLite cannot
    bind the integer; PostgreSQL's int4 column cannot hold it). No key has such an id: 404."""
    target = make_system(database_url)
    target.create_merchant(SLUG)
    kept = create_key(target, SLUG)

    @settings(max_examples=50, deadline=None, database=None)
    @given(key_id=st.integers(min_value=2**31, max_value=2**80))
    def revoke(key_id: int) -> None:
        response = target.admin.delete(f"/api/merchants/{SLUG}/keys/{key_id}", headers=target.auth())
        assert response.status_code == 404, response.get_data(as_text=True)
        assert response.get_json()["error"] == "not_found"

    revoke()
    # the largest id the column holds still reaches the view (unknown key: its own 404)
    largest = target.admin.delete(f"/api/merchants/{SLUG}/keys/{2**31 - 1}", headers=target.auth())
    assert (largest.status_code, largest.get_json()["error"]) == (404, "not_found")
    revoked = target.admin.delete(f"/api/merchants/{SLUG}/keys/{kept['id']}", headers=target.auth())
    assert revoked.status_code == 200 and revoked.get_json()["revoked_at"]


def test_an_unknown_outcome_filter_is_a_422_naming_it(system: System) -> None:
    """Found by schemathesis: ``/api/ops/webhooks?outcome=null`` answered 200 and an empty list
    (a typo looked like "no such deliveries"); the orders listing already refused an unknown
    ``status``. Every word that is not a ``DeliveryOutcome`` is now a 422."""
    from domain.vocabulary import DeliveryOutcome

    known = {o.value for o in DeliveryOutcome}

    @settings(max_examples=50, deadline=None, database=None)
    @given(outcome=st.text(min_size=1, max_size=30).filter(lambda word: word not in known))
    def ask(outcome: str) -> None:
        response = system.admin.get(
            "/api/ops/webhooks", query_string={"outcome": outcome}, headers=system.auth()
        )
        assert response.status_code == 422, response.get_data(as_text=True)
        assert list(response.get_json()["fields"]) == ["outcome"]

    ask()
    for word in known:  # every real outcome still filters
        response = system.admin.get(
            "/api/ops/webhooks", query_string={"outcome": word}, headers=system.auth()
        )
        assert response.status_code == 200, word


def test_a_preview_body_that_is_not_json_is_a_422_not_the_current_template(system: System) -> None:
    """Found by schemathesis: a preview whose body was not JSON at all (``\\x00``) answered 200
    with the current template, as if the body were empty. Only an empty body means that."""
    url = f"/api/merchants/{SLUG}/templates/shipped/email/preview"
    auth = {**system.auth(), "Content-Type": "application/json"}

    @settings(max_examples=50, deadline=None, database=None)
    @given(raw=st.binary(min_size=1, max_size=40).filter(lambda b: not _json_object(b)))
    def post(raw: bytes) -> None:
        response = system.admin.post(url, data=raw, headers=auth)
        assert response.status_code == 422, (raw, response.get_data(as_text=True))
        assert list(response.get_json()["fields"]) == ["body"]

    post()
    assert system.admin.post(url, headers=system.auth()).status_code == 200  # empty: current template
    assert system.admin.post(url, json={}, headers=system.auth()).status_code == 200


def _json_object(raw: bytes) -> bool:
    import json

    try:
        return isinstance(json.loads(raw), dict)
    except ValueError:
        return False
