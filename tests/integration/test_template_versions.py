"""Template versions through the admin API, on SQLite and PostgreSQL: every save keeps a numbered
version (who, when, what, what changed), versions are listed and shown, a restore is a new save,
concurrent saves get consecutive numbers, and any sequence of saves, deletes and restores leaves
versions 1..n with the current template equal to the last one."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import keys as key_store
from store import merchants as merchant_store
from store.template_versions import FIELDS
from tests.integration.conftest import System
from tests.support.json_values import json_object

pytestmark = pytest.mark.redis

TEMPLATE = "/api/merchants/{slug}/templates/shipped/email"


def _put(system: System, slug: str, body: dict[str, Any], **headers: str) -> Any:
    return system.admin.put(TEMPLATE.format(slug=slug), json=body, headers={**system.auth(), **headers})


def _versions(system: System, slug: str, query: str = "") -> dict[str, Any]:
    response = system.admin.get(TEMPLATE.format(slug=slug) + "/versions" + query, headers=system.auth())
    assert response.status_code == 200, response.get_json()
    return json_object(response.get_json())


def _current(system: System, slug: str) -> dict[str, Any]:
    response = system.admin.get(TEMPLATE.format(slug=slug), headers=system.auth())
    assert response.status_code == 200, response.get_json()
    return json_object(response.get_json())


def test_three_saves_keep_three_versions_and_a_restore_is_a_fourth(system: System) -> None:
    system.create_merchant("acme")
    first = {"subject": "Shipped: {{ order.ref }}", "text": "Hi {{ customer.first_name }}"}
    second = {**first, "subject": "On its way: {{ order.ref }}"}
    third = {**second, "text": "Hello {{ customer.first_name }}", "html": "<p>Hello</p>"}
    answers = [_put(system, "acme", body) for body in (first, second, third)]
    assert [a.status_code for a in answers] == [201, 200, 200]
    assert [a.get_json()["version"] for a in answers] == [1, 2, 3]

    listed = _versions(system, "acme", "?locale=en")
    assert listed["locale"] == "en" and listed["next_cursor"] is None
    versions = listed["versions"]
    assert [v["version"] for v in versions] == [3, 2, 1]  # newest first
    assert [v["change"] for v in versions] == [
        {"fields": ["text", "html"], "previous": 2},
        {"fields": ["subject"], "previous": 1},
        {"fields": ["subject", "text"], "previous": None},
    ]
    assert {v["saved_by"] for v in versions} == {"admin"}
    assert all(v["saved_at"] and v["source"] == "merchant" and "text" not in v for v in versions)

    one = system.admin.get(TEMPLATE.format(slug="acme") + "/versions/1", headers=system.auth())
    assert one.status_code == 200
    assert {k: one.get_json()[k] for k in FIELDS} == {**first, "html": None}

    restored = system.admin.post(TEMPLATE.format(slug="acme") + "/versions/1/restore", headers=system.auth())
    assert restored.status_code == 200, restored.get_json()
    assert restored.get_json()["version"] == 4 and restored.get_json()["restored"] == 1
    current = _current(system, "acme")
    assert current["source"] == "merchant"
    assert {k: current[k] for k in FIELDS} == {**first, "html": None}
    fourth = _versions(system, "acme")["versions"][0]
    assert fourth["version"] == 4
    assert fourth["change"] == {"fields": ["subject", "text", "html"], "previous": 3, "restored": 1}


def test_a_delete_is_a_default_version_and_restoring_it_deletes_the_override(system: System) -> None:
    system.create_merchant("acme")
    _put(system, "acme", {"subject": "S", "text": "T"})
    deleted = system.admin.delete(TEMPLATE.format(slug="acme"), headers=system.auth())
    assert deleted.get_json()["deleted"] is True and deleted.get_json()["version"] == 2
    again = system.admin.delete(TEMPLATE.format(slug="acme"), headers=system.auth())
    assert again.get_json()["deleted"] is False and again.get_json()["version"] is None  # nothing changed
    two = system.admin.get(TEMPLATE.format(slug="acme") + "/versions/2", headers=system.auth()).get_json()
    assert two["source"] == "default" and two["text"] is None
    assert two["change"] == {"fields": ["subject", "text"], "previous": 1}

    system.admin.post(TEMPLATE.format(slug="acme") + "/versions/1/restore", headers=system.auth())
    assert _current(system, "acme")["source"] == "merchant"
    back = system.admin.post(TEMPLATE.format(slug="acme") + "/versions/2/restore", headers=system.auth())
    assert back.status_code == 200 and back.get_json()["source"] == "default"
    assert back.get_json()["version"] == 4
    assert _current(system, "acme")["source"] == "default"


def test_versions_page_with_limit_and_cursor(system: System) -> None:
    system.create_merchant("acme")
    for i in range(5):
        _put(system, "acme", {"subject": f"S{i}", "text": "T"})
    first = _versions(system, "acme", "?limit=2")
    assert [v["version"] for v in first["versions"]] == [5, 4]
    second = _versions(system, "acme", f"?limit=2&cursor={first['next_cursor']}")
    assert [v["version"] for v in second["versions"]] == [3, 2]
    third = _versions(system, "acme", f"?limit=2&cursor={second['next_cursor']}")
    assert [v["version"] for v in third["versions"]] == [1] and third["next_cursor"] is None


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/versions/abc", 422, "version"),
        ("/versions/0", 422, "version"),
        ("/versions/01", 422, "version"),
        ("/versions/1%0A", 422, "version"),
        ("/versions/99", 404, None),
        ("/versions?limit=0", 422, "limit"),
        ("/versions?cursor=bm9wZQ", 422, "cursor"),
        ("/versions?locale=EN", 422, "locale"),
    ],
)
def test_unknown_or_invalid_versions_answer_the_json_error_shape(
    system: System, path: str, status: int, field: str | None
) -> None:
    system.create_merchant("acme")
    _put(system, "acme", {"subject": "S", "text": "T"})
    for method in ("get", "post") if path.startswith("/versions/") else ("get",):
        suffix = "/restore" if method == "post" else ""
        response = getattr(system.admin, method)(
            TEMPLATE.format(slug="acme") + path + suffix, headers=system.auth()
        )
        assert response.status_code == status, (method, response.get_json())
        body = response.get_json()
        assert body["error"] == ("invalid" if status == 422 else "not_found") and body["message"]
        if field:
            assert field in body["fields"]


def test_a_restore_of_an_unknown_merchant_is_404(system: System) -> None:
    response = system.admin.post(
        TEMPLATE.format(slug="nobody") + "/versions/1/restore", headers=system.auth()
    )
    assert response.status_code == 404 and response.get_json()["error"] == "not_found"


def test_a_save_with_a_merchant_key_records_the_key(system: System) -> None:
    system.create_merchant("acme")
    with system.database.write() as conn:
        merchant = merchant_store.require(conn, "acme")
        key, secret = key_store.create(conn, merchant.id, "ci")
    response = system.admin.put(
        TEMPLATE.format(slug="acme"),
        json={"subject": "S", "text": "T"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 201, response.get_json()
    assert _versions(system, "acme")["versions"][0]["saved_by"] == f"key:{key.id}"


def test_concurrent_saves_get_consecutive_numbers(system: System) -> None:
    """Eight saves at once (a barrier lines them up): none fails, numbers are 1..8 without a gap,
    each change names the version before it, and the template is the last version's content."""
    system.create_merchant("acme")
    threads = 8
    barrier = threading.Barrier(threads)
    answers: list[int] = []

    def save(i: int) -> None:
        client = system.admin_app.test_client()
        barrier.wait()
        response = client.put(
            TEMPLATE.format(slug="acme"), json={"subject": "S", "text": f"text {i}"}, headers=system.auth()
        )
        answers.append(response.status_code)

    workers = [threading.Thread(target=save, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(answers) == [200] * (threads - 1) + [201]
    versions = _versions(system, "acme")["versions"]
    assert [v["version"] for v in versions] == list(range(threads, 0, -1))
    assert [v["change"]["previous"] for v in versions] == [*range(threads - 1, 0, -1), None]
    last = system.admin.get(TEMPLATE.format(slug="acme") + f"/versions/{threads}", headers=system.auth())
    assert _current(system, "acme")["text"] == last.get_json()["text"]


# ---------------------------------------------------------------------------------- property

TEXTS = ("Hi {{ customer.first_name }}", "Hello", "Parcel {{ order.ref }}")
SUBJECTS = ("Shipped", "On its way: {{ order.ref }}")

operation = st.one_of(
    st.tuples(st.just("save"), st.sampled_from(SUBJECTS), st.sampled_from(TEXTS), st.booleans()),
    st.tuples(st.just("delete")),
    st.tuples(st.just("restore"), st.integers(min_value=1, max_value=8)),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=st.lists(operation, max_size=8))
def test_any_sequence_of_saves_deletes_and_restores_numbers_versions_without_gaps(
    system: System, operations: list[tuple[Any, ...]]
) -> None:
    slug = "m" + uuid.uuid4().hex[:10]  # one merchant per example: the system is shared
    system.create_merchant(slug)
    model: list[dict[str, str | None]] = []  # the content of each version, in order
    current: dict[str, str | None] | None = None  # the override, None: the default
    for op in operations:
        if op[0] == "save":
            content = {"subject": op[1], "text": op[2], "html": "<p>x</p>" if op[3] else None}
            assert _put(system, slug, {k: v for k, v in content.items() if v is not None}).status_code in (
                200,
                201,
            )
            model.append(content)
            current = content
        elif op[0] == "delete":
            system.admin.delete(TEMPLATE.format(slug=slug), headers=system.auth())
            if current is not None:
                current = None
                model.append(dict.fromkeys(FIELDS))
        else:
            response = system.admin.post(
                TEMPLATE.format(slug=slug) + f"/versions/{op[1]}/restore", headers=system.auth()
            )
            if op[1] > len(model):
                assert response.status_code == 404
                continue
            assert response.status_code == 200, response.get_json()
            content = model[op[1] - 1]
            model.append(content)
            current = None if content["text"] is None else content
    versions = _versions(system, slug, "?limit=500")["versions"]
    assert [v["version"] for v in versions] == list(range(len(model), 0, -1))
    for v in versions:
        shown = system.admin.get(
            TEMPLATE.format(slug=slug) + f"/versions/{v['version']}", headers=system.auth()
        )
        content = model[v["version"] - 1]
        assert {k: shown.get_json()[k] for k in FIELDS} == content
        before = model[v["version"] - 2] if v["version"] > 1 else dict.fromkeys(FIELDS)
        assert v["change"]["fields"] == [k for k in FIELDS if before[k] != content[k]]
        assert v["change"]["previous"] == (v["version"] - 1 or None)
    now = _current(system, slug)
    if current is None:
        assert now["source"] == "default"
        assert not model or model[-1]["text"] is None
    else:
        assert now["source"] == "merchant" and {k: now[k] for k in FIELDS} == current == model[-1]
