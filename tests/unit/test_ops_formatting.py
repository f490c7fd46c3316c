"""Pure pieces of the ops tooling: histogram maths, table layout, dead-letter rewriting, CLI wiring."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from admin.dead_letters import _describe, reset_for_requeue
from admin.ops_cli import add_ops_commands, format_queues
from admin.queues import QueueStats
from workers.queue_state import glob_escape
from workers.telemetry import WEBHOOK_LATENCY_BUCKETS, HistogramData, _bucket_index, _label


def test_bucket_bounds_are_inclusive_like_prometheus_le() -> None:
    assert _bucket_index(WEBHOOK_LATENCY_BUCKETS, 0.001) == 0
    assert _bucket_index(WEBHOOK_LATENCY_BUCKETS, 0.0011) == 1
    assert _bucket_index(WEBHOOK_LATENCY_BUCKETS, 2.5) == len(WEBHOOK_LATENCY_BUCKETS) - 1
    assert _bucket_index(WEBHOOK_LATENCY_BUCKETS, 3.0) == len(WEBHOOK_LATENCY_BUCKETS)


def test_histogram_cumulative_ends_with_inf_equal_to_count() -> None:
    h = HistogramData(buckets=(1.0, 5.0), counts=(2, 0, 3), sum=20.0, count=5)
    assert h.cumulative() == [("1.0", 2), ("5.0", 2), ("+Inf", 5)]


def test_labels_are_truncated_and_separator_free() -> None:
    assert _label("a\x1fb") == "a b"
    assert len(_label("x" * 100)) == 64
    assert _label(None) == ""


def test_queue_table_is_aligned_and_shows_unknowns() -> None:
    text = format_queues(
        [QueueStats("events", 12, 1, 0, 3, 4.25), QueueStats("notifications", 0, 0, 1234, None, 7300.0)], 2
    )
    lines = text.splitlines()
    assert lines[0].split() == ["QUEUE", "READY", "DELAYED", "DEAD", "IN_FLIGHT", "OLDEST"]
    assert lines[1].split() == ["events", "12", "1", "0", "3", "4.2s"]
    assert lines[2].split() == ["notifications", "0", "0", "1234", "?", "2.0h"]
    assert len({len(line) for line in lines[:3]}) == 1
    assert lines[3] == "workers alive: 2"


def test_requeue_resets_retry_state_but_keeps_identity() -> None:
    message: dict[str, Any] = {
        "queue_name": "events.DQ",
        "actor_name": "process_event",
        "args": ["acme", "ev-1", "t", "{}"],
        "kwargs": {},
        "message_id": "m-1",
        "message_timestamp": 1,
        "options": {
            "redis_message_id": "r-1",
            "retries": 5,
            "traceback": "Traceback...",
            "eta": 9,
            "requeue_timestamp": 3,
            "max_retries": 5,
        },
    }
    out = reset_for_requeue(message, "events", now_ms=1000)
    assert out["message_id"] == "m-1"
    assert out["queue_name"] == "events"
    assert out["message_timestamp"] == 1000
    assert out["options"] == {"redis_message_id": "r-1", "retries": 0, "max_retries": 5, "dlq_requeues": 1}
    assert message["options"]["retries"] == 5  # the input is not mutated
    assert reset_for_requeue(out, "events", 2000)["options"]["dlq_requeues"] == 2


def test_dead_letter_description_without_recorded_details() -> None:
    message = {
        "actor_name": "process_event",
        "args": ["acme", "ev-9", "t", "{}"],
        "message_id": "m",
        "options": {"retries": 2, "traceback": "Traceback (most recent call last):\n  ...\nKeyError: 'x'\n"},
    }
    d = _describe("events", "r", 1714557600000, message)
    assert (d.merchant, d.event_id, d.notification_id) == ("acme", "ev-9", None)
    assert d.attempts == 3
    assert d.last_error == "KeyError: 'x'"
    assert d.dead_lettered_at == "2024-05-01T10:00:00+00:00"
    recorded = _describe("events", "r", None, message, {"attempts": 4, "error": "ValueError: final"})
    assert (recorded.attempts, recorded.last_error) == (4, "ValueError: final")
    assert _describe("maintenance", "r", None, None).actor is None


def test_glob_escape_protects_scan_patterns() -> None:
    assert glob_escape("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parcelhook")
    add_ops_commands(p.add_subparsers(dest="command", required=True))
    return p


def test_cli_wiring() -> None:
    args = parser().parse_args(["queues", "--watch", "--interval", "5"])
    assert (args.watch, args.interval, callable(args.func)) == (True, 5.0, True)
    args = parser().parse_args(["dlq", "purge", "--queue", "events", "--all", "--yes"])
    assert (args.queue, args.all, args.yes, args.ids) == ("events", True, True, [])
    args = parser().parse_args(["dlq", "requeue", "--queue", "events", "a", "b"])
    assert args.ids == ["a", "b"]
    with pytest.raises(SystemExit):
        parser().parse_args(["dlq", "purge", "--all"])  # --queue is required
