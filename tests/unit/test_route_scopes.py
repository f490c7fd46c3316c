"""Every route of the admin app declares who may call it (``admin/scopes.py``), and one that
does not is refused to everyone — the admin token included. The app's own url_map is walked, so
a route added tomorrow is covered without touching this file."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from flask import Flask

from admin.scopes import Scope, declaration
from config import Settings
from store.vault import generate_key

TOKEN = "scopes-admin-token-" + "x" * 16


def _admin() -> Flask:
    from admin.app import create_app

    settings = replace(
        Settings(),
        database_url="sqlite://",
        admin_token=TOKEN,
        signing_key="scopes-signing-key-" + "y" * 16,
        encryption_keys=(generate_key(),),
    )
    return create_app(settings)


def undeclared(app: Flask) -> list[str]:
    return sorted(
        f"{rule.rule} ({rule.endpoint})"
        for rule in app.url_map.iter_rules()
        if declaration(app, rule.endpoint) is None
    )


def test_every_rule_of_the_admin_app_declares_its_scope() -> None:
    app = _admin()
    rules = list(app.url_map.iter_rules())
    assert len(rules) > 25, "the admin app registered (almost) no routes: the test would prove nothing"
    assert undeclared(app) == [], "routes without @scope(...) (admin/scopes.py): they are refused to everyone"


def test_merchant_routes_name_their_merchant_in_the_path() -> None:
    """``Scope.MERCHANT`` is checked against the path's ``<slug>``: a rule without one could not
    be checked (and a key would be refused everywhere on it)."""
    app = _admin()
    merchant_rules = [
        r
        for r in app.url_map.iter_rules()
        if (d := declaration(app, r.endpoint)) and d.scope is Scope.MERCHANT
    ]
    assert len(merchant_rules) >= 10
    assert [r.rule for r in merchant_rules if "slug" not in r.arguments] == []


def test_only_the_sign_in_forms_and_static_files_are_open() -> None:
    app = _admin()
    open_endpoints = {
        r.endpoint
        for r in app.url_map.iter_rules()
        if (d := declaration(app, r.endpoint)) and d.scope is Scope.OPEN
    }
    assert open_endpoints == {
        "static",
        "dashboard.static",
        "dashboard.login_form",
        "dashboard.login",
        "merchant_page.login_form",
        "merchant_page.login",
    }


def test_a_route_that_forgets_its_scope_is_found_and_refused_even_to_the_admin() -> None:
    app = _admin()

    def forgot() -> str:
        return "should never be served"

    app.add_url_rule("/api/merchants/<slug>/forgot", "forgot", forgot)
    assert undeclared(app) == ["/api/merchants/<slug>/forgot (forgot)"]
    response = app.test_client().get(
        "/api/merchants/acme/forgot", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 403
    assert response.get_json()["error"] == "forbidden"
    assert "declares no scope" in response.get_json()["message"]
    # a declared admin route still answers the admin: the refusal is about the declaration
    assert (
        app.test_client().get("/api/ops/nope", headers={"Authorization": f"Bearer {TOKEN}"}).status_code
        == 404
    )


#: a row of docs/api.md's scope table: | `GET /api/merchants` | admin |
SCOPE_ROW = re.compile(
    r"^\| `((?:GET|PUT|POST|DELETE|PATCH) /[^`]*)` \| (open|admin|merchant|merchant \(filtered\)) \|$", re.M
)
DOC_SCOPE = {
    "open": Scope.OPEN,
    "admin": Scope.ADMIN,
    "merchant": Scope.MERCHANT,
    "merchant (filtered)": Scope.MERCHANT_FILTERED,
}


def test_the_docs_give_every_route_its_declared_scope() -> None:
    app = _admin()
    declared: dict[str, Scope | None] = {}
    for rule in app.url_map.iter_rules():
        found = declaration(app, rule.endpoint)
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"<\1>", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            declared[f"{method} {path}"] = found.scope if found else None
    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    documented = {route: DOC_SCOPE[word] for route, word in SCOPE_ROW.findall(text)}
    assert len(documented) >= 30, "docs/api.md's scope table was not found: the test would prove nothing"
    assert documented == declared, (
        "docs/api.md (Admin API, Authentication: the scope of every route) is stale"
    )
