"""Template memory bombs end to end: refused with 422 by the admin API (save and preview), and a
bomb stored behind the API's back fails its send fast — ``failed`` with a clear error and a
``notification_failed`` alert — while the worker stays alive and keeps sending."""

from __future__ import annotations

import resource
from collections.abc import Callable

import pytest

from store import merchants as merchant_store
from store import templates as template_store
from store.template_versions import Content, TemplateKey
from tests.fixtures.shippo import scenario
from tests.integration.conftest import System
from tests.support import notify_harness as h

pytestmark = pytest.mark.redis

LABEL, *_TRACKS = scenario("delivered")
DELIVERED = _TRACKS[-1]
TEMPLATE = "/api/merchants/acme/templates/shipped/email"

API_BOMBS = [
    "{{ range(99999)|join('x' * 100000) }}",
    "{% set x = 'x' * 100000 %}{{ x|replace('x', x) }}",
    "{% set x = 'a' * 1000 %}{% set y = x~x~x~x~x~x~x~x~x~x %}{% set z = y~y~y~y~y~y~y~y~y~y~y %}{{ z|length }}",
    "{{ '{0:>99999999}'.format(1) }}",
    "{{ '%99999999d' % 1 }}",
    "{{ ('a\\n' * 50000)|indent(99999) }}",
    "{% set s %}{% for i in range(1000) %}{% for j in range(1000) %}xxxxxxxxxx{% endfor %}{% endfor %}{% endset %}",
]


def _maxrss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


@pytest.mark.parametrize("bomb", API_BOMBS)
def test_a_bomb_is_refused_by_put_and_preview_with_422(
    make_system: Callable[..., System], sqlite_url: str, bomb: str
) -> None:
    system = h.acme(make_system, sqlite_url)
    for part in ("text", "html"):
        body = {"subject": "Shipped", "text": "Hi", "html": "<p>Hi</p>", part: f"Hello\n{bomb}\n"}
        response = system.admin.put(TEMPLATE, json=body, headers=system.auth())
        assert response.status_code == 422, response.get_json()
        message = response.get_json()["fields"][part]
        assert message.startswith("line 2: too large: ") and "100 KB" in message, message
        preview = system.admin.post(TEMPLATE + "/preview", json=body, headers=system.auth())
        assert preview.status_code == 422, preview.get_json()
        assert "too large" in preview.get_json()["fields"][part]
    assert system.admin.get(TEMPLATE, headers=system.auth()).get_json()["source"] == "default"


def test_a_stored_bomb_fails_its_send_fast_with_an_alert_and_the_worker_keeps_going(
    make_system: Callable[..., System], database_url: str
) -> None:
    bomb = "Hi {{ customer.first_name }}\n{{ range(99999)|join('x' * 100000) }}"
    with h.wired(make_system, database_url) as (system, smtp, twilio):
        merchant = system.create_merchant("acme", **h.merchant_profile())
        h.register_order(system, "1001", email="jane@example.com", phone="+15551230001")
        with system.database.write() as conn:  # behind the API's back: only the send-time guard stands
            merchant_id = merchant_store.require(conn, "acme").id
            template_store.put(
                system.database,
                conn,
                TemplateKey(merchant_id, "shipped", "email", "en"),
                Content("Shipped {{ order.ref }}", bomb, None),
            )
        system.start_worker()
        before = _maxrss_mb()
        system.post(merchant, LABEL)
        system.drain()

        [shipped] = [r for r in h.rows(system) if r.kind == "shipped" and r.channel == "email"]
        assert shipped.status == "failed"
        assert shipped.error_code == "template_error"
        assert shipped.error == (
            "merchant template failed: text line 2: too large: join would produce more than 100 KB of text"
        )
        [alert] = [r for r in h.rows(system) if r.kind == "notification_failed"]
        assert alert.status == "sent" and alert.to == h.ALERTS
        [alert_mail] = [m for m in smtp.messages if h.ALERTS in m.rcpt_tos]
        assert "too large" in h.text_part(alert_mail)
        assert not [m for m in smtp.messages if "jane@example.com" in m.rcpt_tos], "no default sent instead"
        assert _maxrss_mb() - before < 200, "a coarse bound: the 10 GB string was never built"

        # the same worker is alive and answering: the next notification goes out normally
        system.post(merchant, DELIVERED)
        system.drain()
        delivered = [r for r in h.rows(system) if r.kind == "delivered" and r.channel == "email"]
        assert [r.status for r in delivered] == ["sent"]
        assert [m for m in smtp.messages if "jane@example.com" in m.rcpt_tos]
