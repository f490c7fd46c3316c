"""Health alert rules: pure evaluation over raw figures."""

from __future__ import annotations

from datetime import UTC, datetime

from workers.health import Figures, QueueFigures, Thresholds, evaluate, next_baseline

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T = Thresholds()


def figures(
    *queues: QueueFigures,
    workers: tuple[float, ...] = (0.5,),
    baseline: dict[str, int] | None = None,
    unauthorized: dict[str, int] | None = None,
) -> Figures:
    return Figures(
        queues or (QueueFigures("events", 0, 0, None),), workers, baseline or {}, unauthorized or {}
    )


def keys(f: Figures, t: Thresholds = T) -> list[str]:
    return [a.key for a in evaluate(f, t, NOW)]


def test_a_healthy_system_has_no_alerts() -> None:
    assert keys(figures(QueueFigures("events", 3, 0, 2.0), baseline={"events": 0})) == []


def test_a_queue_whose_oldest_message_waited_over_five_minutes_alerts() -> None:
    [alert] = evaluate(figures(QueueFigures("events", 40, 0, 301.0)), T, NOW)
    assert alert.key == "queue_age:events"
    assert alert.subject == "events"
    assert alert.severity == "warning"
    assert "5 min" in alert.message and "40 ready" in alert.message


def test_exactly_at_the_threshold_is_not_yet_an_alert_and_four_times_over_is_critical() -> None:
    assert keys(figures(QueueFigures("events", 1, 0, 300.0))) == []
    [alert] = evaluate(figures(QueueFigures("events", 1, 0, 1201.0)), T, NOW)
    assert alert.severity == "critical"


def test_an_empty_queue_has_no_age() -> None:
    assert keys(figures(QueueFigures("events", 0, 0, None))) == []


def test_dead_letters_above_the_baseline_alert_with_the_number_of_new_ones() -> None:
    [alert] = evaluate(
        figures(QueueFigures("notifications", 0, 5, None), baseline={"notifications": 3}), T, NOW
    )
    assert alert.key == "dead_letters:notifications"
    assert alert.value == 2
    assert alert.message.startswith("2 new dead letters on queue 'notifications' (5 in total)")


def test_dead_letters_without_a_baseline_yet_do_not_alert() -> None:
    assert keys(figures(QueueFigures("events", 0, 7, None))) == []


def test_the_baseline_starts_at_the_first_count_then_only_goes_down() -> None:
    assert next_baseline(None, 4) == 4
    assert next_baseline(4, 9) == 4, "growth keeps the alert open until someone deals with it"
    assert next_baseline(4, 1) == 1, "a requeue/purge (or expiry) lowers it"


def test_no_heartbeat_within_the_window_means_no_live_worker() -> None:
    assert keys(figures(workers=())) == ["no_worker"]
    assert keys(figures(workers=(16.0, 40.0))) == ["no_worker"]
    assert keys(figures(workers=(40.0, 0.2))) == []


def test_twenty_unauthorized_webhooks_for_one_merchant_look_like_a_rotated_secret() -> None:
    alerts = evaluate(figures(unauthorized={"acme": 20, "globex": 19}), T, NOW)
    assert [a.key for a in alerts] == ["webhook_401:acme"]
    assert "rotated" in alerts[0].message and "10 min" in alerts[0].message


def test_thresholds_are_configurable() -> None:
    t = Thresholds(queue_age_s=10, rejections_401=2, worker_seen_s=60)
    f = figures(QueueFigures("events", 1, 0, 11.0), workers=(50.0,), unauthorized={"acme": 2})
    assert keys(f, t) == ["queue_age:events", "webhook_401:acme"]


def test_alerts_serialize_for_the_dashboard() -> None:
    [alert] = evaluate(figures(workers=()), T, NOW)
    assert alert.as_json() == {
        "key": "no_worker",
        "kind": "no_worker",
        "subject": None,
        "severity": "critical",
        "message": alert.message,
        "value": 0.0,
    }
