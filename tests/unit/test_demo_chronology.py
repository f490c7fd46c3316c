"""Whatever the seed, every demo shipment's scans are dated in the order its story happens."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from admin.demo import build_day

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_every_shipments_scans_follow_its_status_progression(seed: int) -> None:
    labels: dict[str, datetime] = {}
    histories: dict[str, list[tuple[datetime, str, str]]] = defaultdict(list)
    for _, body in build_day(NOW, seed=seed):
        data = body["data"]
        if body["event"] == "transaction_created":
            if data["tracking_number"]:
                labels[data["tracking_number"]] = _at(data["object_created"])
            continue
        history = [
            (_at(s["status_date"]), s["status"], s["substatus"]["code"]) for s in data["tracking_history"]
        ]
        dates = [at for at, _, _ in history]
        assert all(a < b for a, b in zip(dates, dates[1:], strict=False)), (
            f"seed {seed}: {data['tracking_number']} history out of order: {history}"
        )
        assert _at(data["tracking_status"]["status_date"]) == dates[-1], "the current scan is the latest one"
        assert labels[data["tracking_number"]] < dates[0], "scans come after the label"
        assert dates[-1] <= NOW, "no scan from the future"
        known = histories[data["tracking_number"]]
        if len(history) > len(known):
            assert history[: len(known)] == known, "a later webhook extends the earlier history"
            histories[data["tracking_number"]] = history
    assert histories, f"seed {seed}: the day tracks some shipments"
    for tracking, history in histories.items():
        delivered = [at for at, status, _ in history if status == "DELIVERED"]
        out_for_delivery = [at for at, _, code in history if code == "out_for_delivery"]
        if delivered:
            assert all(at < delivered[-1] for at in out_for_delivery), f"seed {seed}: {tracking}: {history}"
            assert delivered[-1] == history[-1][0], "nothing is scanned after delivery"
