"""The ops CLI commands print the broker's real numbers."""

from __future__ import annotations

import argparse
import io
from types import SimpleNamespace

import pytest
from dramatiq.brokers.redis import RedisBroker

from admin.ops_cli import add_ops_commands, cmd_dlq_purge, cmd_dlq_requeue, cmd_queues
from tests.integration.ops_fixtures import dead_letters_on, stand_in

pytestmark = pytest.mark.redis


def run(services: SimpleNamespace, *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="parcelhook")
    add_ops_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    out = io.StringIO()
    code = args.func(args, services, out)
    return code, out.getvalue()


def dead_notifications(broker: RedisBroker, n: int) -> None:
    dead_letters_on(broker, "notifications", n, RuntimeError("twilio 21211"))


def test_queues_table_shows_the_numbers(ops_broker: RedisBroker, ops_services: SimpleNamespace) -> None:
    # declare every actor before a Worker starts: dramatiq's worker middleware would
    # start a consumer for a queue declared later, even after the worker stopped
    events = stand_in(ops_broker, queue="events", name="process_event")
    dead_notifications(ops_broker, 2)
    for i in range(12):
        events.send("acme", f"ev-{i}", "x", "{}")
    events.send_with_options(args=("acme", "later", "x", "{}"), delay=60_000)

    code, text = run(ops_services, "queues")
    assert code == 0
    lines = text.splitlines()
    assert lines[0].split() == ["QUEUE", "READY", "DELAYED", "DEAD", "IN_FLIGHT", "OLDEST"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:4]}
    assert rows["events"][:4] == ["12", "1", "0", "0"]
    assert rows["events"][4].endswith("s")
    assert rows["notifications"] == ["0", "0", "2", "0", "-"]
    assert rows["maintenance"] == ["0", "0", "0", "0", "-"]
    assert lines[-1] == "workers alive: 0"  # the worker that dead-lettered them has stopped
    # numeric columns are right-aligned: each row ends at the same place
    assert len({len(line) for line in lines[:4]}) == 1


def test_watch_redraws_until_interrupted(ops_services: SimpleNamespace) -> None:
    out = io.StringIO()
    naps: list[float] = []
    assert cmd_queues(ops_services, True, 0.5, out, iterations=3, sleep=naps.append) == 0
    assert out.getvalue().count("QUEUE") == 3
    assert naps == [0.5, 0.5]

    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    out = io.StringIO()
    assert cmd_queues(ops_services, True, 1.0, out, sleep=interrupt) == 0
    assert out.getvalue().count("QUEUE") == 1


def test_workers_lists_live_heartbeats(ops_broker: RedisBroker, ops_services: SimpleNamespace) -> None:
    code, text = run(ops_services, "workers")
    assert (code, text) == (0, "no live workers\n")
    from workers.heartbeat import WorkerHeartbeat

    stand_in(ops_broker, queue="events", name="noop").send()
    assert run(ops_services, "workers") == (0, "no live workers\n")  # sending does not make a worker
    WorkerHeartbeat(ops_services.redis, "parcelhook").beat()
    code, text = run(ops_services, "workers")
    assert text.endswith("workers alive: 1\n")


def test_dlq_list_requeue_and_purge(ops_broker: RedisBroker, ops_services: SimpleNamespace) -> None:
    dead_notifications(ops_broker, 3)
    code, text = run(ops_services, "dlq", "list")
    assert code == 0
    assert "notification=100" in text and "notification=102" in text
    assert "RuntimeError: twilio 21211" in text
    assert text.endswith("3 shown, 3 dead in total\n")
    ids = [line.split()[0] for line in text.splitlines() if "send_notification" in line]
    assert len(ids) == 3

    code, text = run(ops_services, "dlq", "requeue", "--queue", "notifications", ids[0], "bogus")
    assert (code, text) == (0, "requeued 1 message(s) on notifications (1 unknown id(s) ignored)\n")
    assert ops_services.redis.llen("parcelhook:notifications") == 1

    code, text = run(ops_services, "dlq", "purge", "--queue", "notifications", ids[1])
    assert (code, text) == (0, "purged 1 dead letter(s) from notifications (0 unknown id(s) ignored)\n")

    code, text = run(ops_services, "dlq", "purge", "--queue", "notifications", "--all")
    assert code == 2
    assert "refusing to purge all 1 dead letter(s)" in text
    assert ops_services.redis.zcard("parcelhook:notifications.XQ") == 1

    code, text = run(ops_services, "dlq", "purge", "--queue", "notifications", "--all", "--yes")
    assert (code, text) == (0, "purged 1 dead letter(s) from notifications\n")
    code, text = run(ops_services, "dlq", "list", "--queue", "notifications")
    assert text == "no dead letters\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("dlq", "requeue", "--queue", "nope", "x"), "unknown queue"),
        (("dlq", "purge", "--queue", "nope", "--all", "--yes"), "unknown queue"),
        (("dlq", "requeue", "--queue", "events"), "give dead-letter ids or --all"),
        (("dlq", "purge", "--queue", "events", "--all", "--yes", "x"), "either ids or --all"),
        (("dlq", "list", "--queue", "nope"), "unknown queue"),
    ],
)
def test_dlq_usage_errors_exit_2(ops_services: SimpleNamespace, argv: tuple[str, ...], message: str) -> None:
    code, text = run(ops_services, *argv)
    assert code == 2
    assert message in text


def test_bulk_dlq_commands_called_without_a_queue_exit_2(ops_services: SimpleNamespace) -> None:
    """argparse requires --queue; the commands refuse a missing one themselves too."""
    out = io.StringIO()
    assert cmd_dlq_requeue(ops_services, None, ["x"], False, out) == 2
    assert cmd_dlq_purge(ops_services, None, [], True, True, out) == 2
    assert out.getvalue() == "error: --queue is required\n" * 2
