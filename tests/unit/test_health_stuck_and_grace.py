"""Health rules for messages that stopped moving, and the start-up grace of "no live worker"."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from workers.health import Figures, QueueFigures, Thresholds, evaluate

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T = Thresholds()


def queue(**stuck: float | int | None) -> QueueFigures:
    return QueueFigures("notifications", 0, 0, None, **stuck)  # type: ignore[arg-type]


def keys(q: QueueFigures, *, workers: tuple[float, ...] = (0.5,), uptime: float | None = None) -> list[str]:
    return [a.key for a in evaluate(Figures((q,), workers, {}, {}, uptime), T, NOW)]


def test_delayed_messages_long_past_their_eta_beside_a_live_worker_are_stranded() -> None:
    [alert] = evaluate(Figures((queue(delayed=63, overdue=63, most_overdue_s=570.0),), (0.4, 1.2)), T, NOW)
    assert alert.key == "delayed_stuck:notifications" and alert.kind == "delayed_stuck"
    assert alert.severity == "critical", "over four times the threshold"
    assert alert.message.startswith(
        "63 of 63 delayed messages on queue 'notifications' are past their due time"
    )
    assert "9 min" in alert.message and alert.value == 570.0


def test_delayed_messages_not_yet_due_or_just_due_are_healthy() -> None:
    assert keys(queue(delayed=40, overdue=0, most_overdue_s=None)) == []


def test_messages_held_in_flight_past_the_threshold_alert_as_a_warning() -> None:
    [alert] = evaluate(Figures((queue(in_flight=3, held_too_long=1, longest_held_s=700.0),), (0.4,)), T, NOW)
    assert (alert.key, alert.severity) == ("in_flight_stuck:notifications", "warning")
    assert alert.message.startswith("1 of 3 in-flight messages on queue 'notifications' have been held")


def test_without_a_live_worker_stuck_messages_are_the_no_worker_alert_alone() -> None:
    q = queue(delayed=5, overdue=5, most_overdue_s=900.0, in_flight=2, held_too_long=2, longest_held_s=900.0)
    assert keys(q, workers=()) == ["no_worker"]


def test_no_live_worker_waits_out_the_start_up_grace_then_alerts() -> None:
    assert keys(queue(), workers=(), uptime=3.0) == [], "make run: workers are still booting"
    assert keys(queue(), workers=(), uptime=T.startup_grace_s) == []
    assert keys(queue(), workers=(), uptime=T.startup_grace_s + 0.1) == ["no_worker"]
    assert keys(queue(), workers=(), uptime=None) == ["no_worker"], "no known start: no grace"


@settings(max_examples=200, deadline=None)
@given(
    overdue_s=st.floats(0, 10_000),
    held_s=st.floats(0, 10_000),
    live=st.booleans(),
    uptime=st.one_of(st.none(), st.floats(0, 100)),
)
def test_stuck_alerts_open_exactly_past_their_thresholds_while_a_worker_lives(
    overdue_s: float, held_s: float, live: bool, uptime: float | None
) -> None:
    # figures as read_figures makes them: counted only when past the threshold
    q = queue(
        delayed=1,
        overdue=int(overdue_s > T.overdue_s),
        most_overdue_s=overdue_s if overdue_s > T.overdue_s else None,
        in_flight=1,
        held_too_long=int(held_s > T.in_flight_s),
        longest_held_s=held_s,
    )
    got = set(keys(q, workers=(0.5,) if live else (), uptime=uptime))
    expected = set()
    if live and overdue_s > T.overdue_s:
        expected.add("delayed_stuck:notifications")
    if live and held_s > T.in_flight_s:
        expected.add("in_flight_stuck:notifications")
    if not live and (uptime is None or uptime > T.startup_grace_s):
        expected.add("no_worker")
    assert got == expected
