"""Ops commands for the ``parcelhook`` CLI: queues, workers, dead letters.

``add_ops_commands(subparsers)`` registers::

    parcelhook queues [--watch] [--interval S]
    parcelhook workers
    parcelhook dlq list    [--queue Q] [--limit N]
    parcelhook dlq requeue --queue Q (ID... | --all)
    parcelhook dlq purge   --queue Q (ID... | --all --yes)

Each sets ``func(args, services, out) -> int`` (exit code). ``services`` is the
same object as the Flask extension (settings, redis, namespace, queues,
telemetry). Purging explicit ids needs no confirmation (the ids are the
confirmation); purging ``--all`` is refused without ``--yes``. Requeue never
asks: it is not destructive and each message moves at most once.

A broker (or state Redis) that does not answer is one line on stderr naming it, its
password masked, and exit code 1 -- the same for Redis and RabbitMQ, never a traceback.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import redis

from admin.dead_letters import DeadLetters, RabbitDeadLetters, dead_letters_for
from admin.queues import QueueInspector, QueueStats, inspector_for, is_rabbitmq
from workers.rabbitmq_state import RabbitUnreachable

CLEAR = "\x1b[H\x1b[2J"


def _fmt_age(age: float | None) -> str:
    if age is None:
        return "-"
    if age < 120:
        return f"{age:.1f}s"
    if age < 7200:
        return f"{age / 60:.1f}m"
    return f"{age / 3600:.1f}h"


def _fmt(value: int | None) -> str:
    return "?" if value is None else str(value)


def format_queues(stats: Sequence[QueueStats], workers_alive: int) -> str:
    header = ("QUEUE", "READY", "DELAYED", "DEAD", "IN_FLIGHT", "OLDEST")
    rows = [header] + [
        (q.name, _fmt(q.ready), _fmt(q.delayed), _fmt(q.dead), _fmt(q.in_flight), _fmt_age(q.oldest_age_s))
        for q in stats
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    lines.append(f"workers alive: {workers_alive}")
    return "\n".join(lines) + "\n"


def _inspector(services: Any) -> QueueInspector:
    return inspector_for(services)


def _dead_letters(services: Any) -> DeadLetters | RabbitDeadLetters:
    return dead_letters_for(services)


def cmd_queues(
    services: Any,
    watch: bool,
    interval: float,
    out: TextIO,
    *,
    iterations: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print the queue table; with ``watch`` redraw every ``interval`` s until Ctrl-C
    (``iterations`` bounds the loop, for tests)."""
    inspector = _inspector(services)
    drawn = 0
    try:
        while True:
            table = format_queues(inspector.queues(), len(inspector.workers()))
            if watch and out.isatty():
                out.write(CLEAR)
            if watch:
                out.write(time.strftime("%Y-%m-%d %H:%M:%S") + "\n")
            out.write(table)
            out.flush()
            drawn += 1
            if not watch or (iterations is not None and drawn >= iterations):
                return 0
            sleep(max(0.1, interval))
    except KeyboardInterrupt:
        out.write("\n")
        return 0


def cmd_workers(services: Any, out: TextIO) -> int:
    workers = _inspector(services).workers()
    if not workers:
        out.write("no live workers\n")
        return 0
    width = max(len("WORKER"), *(len(w.id) for w in workers))
    out.write(f"{'WORKER'.ljust(width)}  LAST_SEEN\n")
    for w in workers:
        out.write(f"{w.id.ljust(width)}  {w.last_seen_s:.1f}s ago\n")
    out.write(f"workers alive: {len(workers)}\n")
    return 0


def _check_queue(services: Any, queue: str | None, out: TextIO) -> bool:
    if queue is not None and queue not in services.queues:
        out.write(f"error: unknown queue {queue!r} (one of {', '.join(services.queues)})\n")
        return False
    return True


def _required_queue(services: Any, queue: str | None, out: TextIO) -> str | None:
    """The ``--queue`` a bulk command needs; None (the error written) when missing or unknown."""
    if queue is None:
        out.write("error: --queue is required\n")
        return None
    return queue if _check_queue(services, queue, out) else None


def cmd_dlq_list(services: Any, queue: str | None, limit: int, out: TextIO) -> int:
    if not _check_queue(services, queue, out):
        return 2
    dl = _dead_letters(services)
    names = [queue] if queue else list(services.queues)
    letters = [d for name in names for d in dl.list(name, limit)]
    letters.sort(key=lambda d: d.dead_lettered_at or "", reverse=True)
    letters = letters[:limit]
    if not letters:
        out.write("no dead letters\n")
        return 0
    for d in letters:
        if d.actor == "process_event":
            what = f"merchant={d.merchant} event={d.event_id}"
        elif d.actor == "send_notification":
            what = f"notification={d.notification_id}"
        else:
            what = ""
        out.write(f"{d.id}  {d.queue}  {d.actor}  {what}  attempts={d.attempts}  at={d.dead_lettered_at}\n")
        if d.last_error:
            out.write(f"    {d.last_error}\n")
    total = sum(dl.count(name) for name in names)
    out.write(f"{len(letters)} shown, {total} dead in total\n")
    return 0


def _bulk_args_ok(ids: Sequence[str], all_: bool, out: TextIO) -> bool:
    if all_ and ids:
        out.write("error: give either ids or --all, not both\n")
        return False
    if not all_ and not ids:
        out.write("error: give dead-letter ids or --all\n")
        return False
    return True


def cmd_dlq_requeue(services: Any, queue: str | None, ids: Sequence[str], all: bool, out: TextIO) -> int:
    queue = _required_queue(services, queue, out)
    if queue is None or not _bulk_args_ok(ids, all, out):
        return 2
    n = _dead_letters(services).requeue(queue, None if all else list(ids))
    out.write(f"requeued {n} message(s) on {queue}")
    if not all:
        out.write(f" ({len(set(ids)) - n} unknown id(s) ignored)")
    out.write("\n")
    return 0


def cmd_dlq_purge(
    services: Any, queue: str | None, ids: Sequence[str], all: bool, yes: bool, out: TextIO
) -> int:
    queue = _required_queue(services, queue, out)
    if queue is None or not _bulk_args_ok(ids, all, out):
        return 2
    dl = _dead_letters(services)
    if all and not yes:
        out.write(f"refusing to purge all {dl.count(queue)} dead letter(s) of {queue} without --yes\n")
        return 2
    n = dl.purge(queue, None if all else list(ids))
    out.write(f"purged {n} dead letter(s) from {queue}")
    if not all:
        out.write(f" ({len(set(ids)) - n} unknown id(s) ignored)")
    out.write("\n")
    return 0


def masked_url(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _unreachable(services: Any, exc: Exception) -> str:
    """The one line naming what did not answer (its URL, password masked) and why."""
    settings = getattr(services, "settings", None)
    if isinstance(exc, RabbitUnreachable):
        where = f" at {masked_url(settings.broker_url)}" if settings is not None else ""
        return f"parcelhook: RabbitMQ broker{where} unreachable ({exc})"
    if settings is None:
        what, where = "Redis", ""
    else:
        what = "state Redis" if is_rabbitmq(settings) else "Redis broker"
        where = f" at {masked_url(settings.state_redis_url)}"
    return f"parcelhook: {what}{where} unreachable ({type(exc).__name__}: {exc})"


Command = Callable[[argparse.Namespace, Any, TextIO], int]


def _reporting_unreachable(command: Command) -> Command:
    @functools.wraps(command)
    def run(args: argparse.Namespace, services: Any, out: TextIO) -> int:
        try:
            return command(args, services, out)
        except (RabbitUnreachable, redis.ConnectionError, redis.TimeoutError) as exc:
            print(_unreachable(services, exc), file=sys.stderr)
            return 1

    return run


def add_ops_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("queues", help="queue depths, dead letters and live workers")
    p.add_argument("--watch", action="store_true", help="redraw until Ctrl-C")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between redraws (default 2)")
    p.set_defaults(func=_reporting_unreachable(lambda a, s, o: cmd_queues(s, a.watch, a.interval, o)))

    p = subparsers.add_parser("workers", help="live worker processes (broker heartbeats)")
    p.set_defaults(func=_reporting_unreachable(lambda a, s, o: cmd_workers(s, o)))

    dlq = subparsers.add_parser("dlq", help="dead letters: list, requeue, purge")
    sub = dlq.add_subparsers(dest="dlq_command", required=True)

    p = sub.add_parser("list", help="most recent dead letters")
    p.add_argument("--queue")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=_reporting_unreachable(lambda a, s, o: cmd_dlq_list(s, a.queue, a.limit, o)))

    p = sub.add_parser("requeue", help="put dead letters back on their queue (retries reset)")
    p.add_argument("--queue", required=True)
    p.add_argument("--all", action="store_true", help="every dead letter of the queue")
    p.add_argument("ids", nargs="*")
    p.set_defaults(func=_reporting_unreachable(lambda a, s, o: cmd_dlq_requeue(s, a.queue, a.ids, a.all, o)))

    p = sub.add_parser("purge", help="delete dead letters (--all needs --yes)")
    p.add_argument("--queue", required=True)
    p.add_argument("--all", action="store_true", help="every dead letter of the queue")
    p.add_argument("--yes", action="store_true", help="confirm a purge of --all")
    p.add_argument("ids", nargs="*")
    p.set_defaults(
        func=_reporting_unreachable(lambda a, s, o: cmd_dlq_purge(s, a.queue, a.ids, a.all, a.yes, o))
    )
