"""A flood of bad-token requests cannot push real deliveries out of the recent-webhooks log: the
accepted and the rejected deliveries are kept apart and merged, newest first, on read."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.fixtures.shippo import scenario
from tests.integration.conftest import System
from workers.telemetry import RECENT_WEBHOOKS_CAP

pytestmark = pytest.mark.redis

LABEL, PRE_TRANSIT, *_ = scenario("delivered")


def test_bad_token_flood_keeps_the_real_deliveries_in_the_log(
    make_system: Callable[..., System], sqlite_url: str
) -> None:
    system = make_system(sqlite_url)
    merchant = system.create_merchant("acme")
    assert system.post(merchant, LABEL).get_json()["status"] == "queued"
    for _ in range(RECENT_WEBHOOKS_CAP + 100):
        assert system.post(merchant, PRE_TRANSIT, token="not-the-token").status_code == 401
    assert system.post(merchant, PRE_TRANSIT).get_json()["status"] == "queued"

    def log(query: str) -> list[tuple[str, int]]:
        response = system.admin.get(f"/api/ops/webhooks?{query}", headers=system.auth())
        assert response.status_code == 200
        return [(d["event"], d["status_code"]) for d in response.get_json()["deliveries"]]

    assert log("merchant=acme&outcome=queued") == [("track_updated", 200), ("transaction_created", 200)]
    # merged newest first: the last real delivery, then the flood, the first real delivery still there
    newest = log("merchant=acme&limit=3")
    assert newest == [("track_updated", 200), ("unknown", 401), ("unknown", 401)]
    everything = log("limit=1000")
    assert len(everything) == 1000 and everything[0] == ("track_updated", 200)
    assert log("outcome=bad_token&limit=1000") == [("unknown", 401)] * 1000
