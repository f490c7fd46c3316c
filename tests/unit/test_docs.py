"""The repository explains itself, truthfully: every route either Flask app registers is listed in
docs/api.md (and nothing listed there is missing from the app), every word of every vocabulary in
domain/vocabulary.py is in its table, and the paths the docs point at exist."""

from __future__ import annotations

import enum
import inspect
import re
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask

import domain.vocabulary as vocabulary
from config import Settings
from store.vault import generate_key

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "docs" / "api.md"
ARCHITECTURE = ROOT / "docs" / "architecture.md"

#: `METHOD /path` as the docs write a route (query strings and prose may follow the path)
DOCUMENTED_ROUTE = re.compile(r"`(GET|HEAD|POST|PUT|PATCH|DELETE) (/[^`?\s]*)")
#: a table row whose first cell is one backticked word: `| `value` | … |`
TABLE_ROW = re.compile(r"^\| `([^`]+)` \|(.*)$", re.MULTILINE)
#: a vocabulary table's heading names its enum: ### Shipment status (`ShipmentStatus`)
VOCABULARY_HEADING = re.compile(r"^### [^\n]*\(`(\w+)`\)$", re.MULTILINE)
IGNORED_METHODS = {"HEAD", "OPTIONS"}  # added by Flask/werkzeug to every GET / every route


def _sections(text: str, level: str) -> dict[str, str]:
    """``{heading: body}`` for the headings of ``level`` (``"##"`` or ``"###"``)."""
    parts = re.split(rf"^{level} (.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def _section(title_start: str) -> str:
    found = [
        body
        for title, body in _sections(API.read_text(encoding="utf-8"), "##").items()
        if title.startswith(title_start)
    ]
    assert len(found) == 1, f"docs/api.md needs exactly one '## {title_start}…' section"
    return found[0]


def _settings() -> Settings:
    return replace(
        Settings(),
        database_url="sqlite://",
        admin_token="docs-admin-token-" + "x" * 16,
        signing_key="docs-signing-key-" + "y" * 16,
        encryption_keys=(generate_key(),),
    )


def _web() -> Flask:
    from ingest.app import create_app

    return create_app(_settings())


def _admin() -> Flask:
    from admin.app import create_app

    return create_app(_settings())


def _registered(app: Flask) -> set[str]:
    """``"METHOD /path"`` for every route, converters dropped (``<ref:ref>`` → ``<ref>``).

    Flask's own ``static`` route is left out only when the app has no static folder: then it can
    serve nothing (the receiver's case). The admin app's static route serves files, so it counts."""
    routes: set[str] = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" and not (app.static_folder and Path(app.static_folder).is_dir()):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"<\1>", rule.rule)
        routes.update(f"{method} {path}" for method in (rule.methods or set()) - IGNORED_METHODS)
    return routes


def _documented(section: str) -> set[str]:
    return {f"{method} {path}" for method, path in DOCUMENTED_ROUTE.findall(section)}


APPS = {"web": (_web, "Receiver"), "admin": (_admin, "Admin API")}


@pytest.mark.parametrize("name", APPS)
def test_every_route_the_app_registers_is_documented(name: str) -> None:
    build, section = APPS[name]
    routes = _registered(build())
    assert routes, f"the {name} app registered no routes: the test would prove nothing"
    missing = sorted(routes - _documented(_section(section)))
    assert not missing, f"routes of {name} missing from docs/api.md, section '{section}': {missing}"


@pytest.mark.parametrize("name", APPS)
def test_every_documented_route_exists(name: str) -> None:
    build, section = APPS[name]
    documented = _documented(_section(section))
    assert documented, f"docs/api.md, section '{section}', lists no routes"
    stale = sorted(documented - _registered(build()))
    assert not stale, f"docs/api.md, section '{section}', lists routes the {name} app does not have: {stale}"


def _vocabularies() -> dict[str, type[enum.StrEnum]]:
    return {
        name: cls
        for name, cls in inspect.getmembers(vocabulary, inspect.isclass)
        if issubclass(cls, enum.StrEnum) and cls.__module__ == vocabulary.__name__
    }


def _vocabulary_tables() -> dict[str, dict[str, str]]:
    """``{EnumName: {value: rest of the row}}`` from the Vocabularies section."""
    section = _section("Vocabularies")
    tables: dict[str, dict[str, str]] = {}
    for title, body in _sections(section, "###").items():
        named = VOCABULARY_HEADING.fullmatch(f"### {title}")
        assert named, f"vocabulary heading {title!r} does not name its enum as (`EnumName`)"
        assert named.group(1) not in tables, f"{named.group(1)} has two tables"
        tables[named.group(1)] = {value: rest for value, rest in TABLE_ROW.findall(body)}
    return tables


def test_every_vocabulary_is_documented_word_for_word() -> None:
    enums, tables = _vocabularies(), _vocabulary_tables()
    assert len(enums) >= 8, "domain/vocabulary.py's enums were not found: the test would prove nothing"
    assert not sorted(set(enums) - set(tables)), (
        f"vocabularies without a table in docs/api.md: {sorted(set(enums) - set(tables))}"
    )
    assert not sorted(set(tables) - set(enums)), (
        f"docs/api.md documents enums that do not exist: {sorted(set(tables) - set(enums))}"
    )
    for name, cls in enums.items():
        values = {member.value for member in cls}
        assert not values - set(tables[name]), (
            f"{name} values missing from docs/api.md: {sorted(values - set(tables[name]))}"
        )
        assert not set(tables[name]) - values, (
            f"docs/api.md lists {name} values that do not exist: {sorted(set(tables[name]) - values)}"
        )


def test_merchant_alerts_are_documented_as_such() -> None:
    rows = _vocabulary_tables()["NotificationKind"]
    audience = {kind: rest.strip(" |") for kind, rest in rows.items()}
    for kind in vocabulary.NotificationKind:
        expected = "merchant" if kind in vocabulary.MERCHANT_ALERTS else "customer"
        assert audience[kind.value] == expected, (
            f"{kind.value} is a {expected} notification, docs/api.md says {audience[kind.value]!r}"
        )


def _repo_paths(text: str) -> set[str]:
    """Backticked repository paths (``ingest/shippo.py``, ``tests/fault/``) the text points at."""
    top = {p.name for p in ROOT.iterdir()}
    return {tok for tok in re.findall(r"`([\w.-]+(?:/[\w.-]+)+/?)`", text) if tok.split("/")[0] in top}


@pytest.mark.parametrize("doc", [API, ARCHITECTURE], ids=lambda p: p.name)
def test_every_path_the_docs_point_at_exists(doc: Path) -> None:
    paths = _repo_paths(doc.read_text(encoding="utf-8"))
    assert len(paths) >= 5, f"{doc.name} names no repository paths: the test would prove nothing"
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"{doc.name} points at paths that do not exist: {missing}"


def test_the_layer_table_names_every_package() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    packages = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name != "tests")
    assert "domain" in packages
    missing = [p for p in packages if f"| `{p}/` |" not in text]
    assert not missing, f"docs/architecture.md's layer table does not name: {missing}"
