"""What RabbitMQ itself says about dramatiq's queues (read-only), for ops and health alerts.

dramatiq's RabbitMQ broker (``dramatiq/brokers/rabbitmq.py``) keeps three durable queues per
queue name ``q``: ``q`` (ready; a worker's prefetched or running messages are *unacked* there),
``q.DQ`` (delayed: a running worker consumes it at once and holds each message unacked until
its eta) and ``q.XQ`` (dead letters, kept 7 days).

Two ways to read them, chosen by ``PARCELHOOK_RABBITMQ_MANAGEMENT_URL``:

* **management HTTP API** (set): ``GET /api/queues/<vhost>/<queue>`` for the three queues:
  ``ready`` = ``messages_ready`` of ``q``, ``in_flight`` = its ``messages_unacknowledged``,
  ``delayed`` = every message of ``q.DQ`` (ready or held by a worker), ``dead`` = the
  messages of ``q.XQ``, ``consumers`` = consumers of ``q``. ``oldest_age_s`` comes from the
  head message of ``q``, read with ``POST /api/queues/<vhost>/<q>/get`` in
  ``ack_requeue_true`` mode (RabbitMQ puts it back in its place; it is then marked
  *redelivered*, which dramatiq ignores). The API's figures are statistics RabbitMQ refreshes
  every ``collect_statistics_interval`` (5 s by default): they lag by up to that.
* **passive declares** (unset): ``queue.declare(passive=True)`` over AMQP answers
  ``message_count`` (ready only) and ``consumer_count``: ``ready``, ``delayed`` (only the
  delayed messages no worker holds yet), ``dead`` and ``consumers``; ``in_flight`` and
  ``oldest_age_s`` are ``None`` (AMQP cannot tell).

A queue nobody declared yet reads as empty. Credentials in either URL are never logged or
shown: errors name the host only.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from dramatiq.common import dq_name, xq_name

from workers.queue_state import head_age_s

#: Seconds an HTTP call to the management API may take.
MANAGEMENT_TIMEOUT_S = 5.0


class RabbitUnreachable(Exception):
    """The broker (or its management API) did not answer; the message names no credential."""


@dataclass(frozen=True)
class RabbitQueueCounts:
    name: str
    ready: int
    delayed: int
    dead: int
    in_flight: int | None
    oldest_age_s: float | None
    consumers: int | None


def amqp_vhost(amqp_url: str) -> str:
    """The virtual host of an ``amqp://`` URL (pika's rule: the path, unquoted; ``/`` if empty)."""
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


class ManagementApi:
    """A tiny client of RabbitMQ's management HTTP API (stdlib ``urllib``; basic auth)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.base = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        self.base += parts.path.rstrip("/")
        user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def __repr__(self) -> str:  # no credentials
        return f"ManagementApi({self.base!r})"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """JSON of ``path``; None on 404. Raises :class:`RabbitUnreachable` otherwise."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310 - http(s) only
        request.add_header("Authorization", self._auth)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=MANAGEMENT_TIMEOUT_S) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise RabbitUnreachable(f"RabbitMQ management API at {self.base} answered {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise RabbitUnreachable(
                f"RabbitMQ management API at {self.base} unreachable: {type(exc).__name__}"
            ) from None

    def queue(self, vhost: str, name: str) -> dict[str, Any] | None:
        return self.call("GET", f"/api/queues/{quote(vhost, safe='')}/{quote(name, safe='')}")  # type: ignore[no-any-return]

    def peek(self, vhost: str, name: str) -> dict[str, Any] | None:
        """The head message of ``name`` (put back in place), or None when empty."""
        rows = self.call(
            "POST",
            f"/api/queues/{quote(vhost, safe='')}/{quote(name, safe='')}/get",
            {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 1_000_000},
        )
        return rows[0] if rows else None


def _head_age_s(row: dict[str, Any] | None, now_ms: int) -> float | None:
    if not row or row.get("payload_encoding") != "string":
        return None
    age = head_age_s(str(row.get("payload", "")).encode(), now_ms)
    return None if age is None else round(age, 3)


class RabbitQueues:
    """Reads the counts of dramatiq's queues on one RabbitMQ virtual host (see the module doc)."""

    def __init__(self, amqp_url: str, management_url: str | None = None) -> None:
        self.amqp_url = amqp_url
        self.vhost = amqp_vhost(amqp_url)
        self.management = ManagementApi(management_url) if management_url else None

    def __repr__(self) -> str:
        mode = "management" if self.management else "passive"
        return f"RabbitQueues(vhost={self.vhost!r}, mode={mode})"

    def read(self, queues: Iterable[str], now_ms: int) -> list[RabbitQueueCounts]:
        names = tuple(queues)
        if self.management is not None:
            return [self._from_management(self.management, name, now_ms) for name in names]
        return self._from_declares(names)

    def _from_management(self, api: ManagementApi, name: str, now_ms: int) -> RabbitQueueCounts:
        q = api.queue(self.vhost, name) or {}
        dq = api.queue(self.vhost, dq_name(name)) or {}
        xq = api.queue(self.vhost, xq_name(name)) or {}
        ready = int(q.get("messages_ready", 0) or 0)
        oldest = _head_age_s(api.peek(self.vhost, name), now_ms) if ready else None
        return RabbitQueueCounts(
            name=name,
            ready=ready,
            delayed=int(dq.get("messages", 0) or 0),
            dead=int(xq.get("messages", 0) or 0),
            in_flight=int(q.get("messages_unacknowledged", 0) or 0),
            oldest_age_s=oldest,
            consumers=int(q.get("consumers", 0) or 0),
        )

    def _from_declares(self, names: tuple[str, ...]) -> list[RabbitQueueCounts]:
        import pika  # type: ignore[import-untyped]  # no stubs on PyPI
        import pika.exceptions  # type: ignore[import-untyped]

        try:
            connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        except pika.exceptions.AMQPError as exc:
            host = urlsplit(self.amqp_url).hostname
            raise RabbitUnreachable(f"RabbitMQ at {host} unreachable: {type(exc).__name__}") from None
        try:
            channel = connection.channel()

            def declare(queue: str) -> tuple[int, int]:
                nonlocal channel
                try:
                    ok = channel.queue_declare(queue=queue, passive=True).method
                    return int(ok.message_count), int(ok.consumer_count)
                except pika.exceptions.ChannelClosedByBroker as exc:
                    if exc.reply_code != 404:
                        raise
                    channel = connection.channel()  # a 404 closes the channel; not declared yet
                    return 0, 0

            out = []
            for name in names:
                ready, consumers = declare(name)
                delayed, _ = declare(dq_name(name))
                dead, _ = declare(xq_name(name))
                out.append(RabbitQueueCounts(name, ready, delayed, dead, None, None, consumers))
            return out
        except pika.exceptions.AMQPError as exc:
            host = urlsplit(self.amqp_url).hostname
            raise RabbitUnreachable(f"RabbitMQ at {host} failed: {type(exc).__name__}") from None
        finally:
            if connection.is_open:
                connection.close()
