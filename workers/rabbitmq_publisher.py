"""dramatiq's RabbitMQ broker with publishing connections pooled per process (dramatiq #381).

dramatiq's ``RabbitmqBroker`` keeps one pika connection per *thread* (``threading.local``)
and remembers every connection it opened in ``broker.connections``. Under gevent (the `web`
process runs gunicorn's gevent workers, ``ingest/gunicorn_conf.py``) ``threading.local`` is
per *greenlet*, and every request is a new greenlet: each enqueue opened a connection that
was never used again nor closed, until the process ran out of file descriptors or RabbitMQ
refused it.

:class:`PooledPublisherRabbitmqBroker` lends each ``enqueue`` a connection (and its channel)
from a small idle pool, and takes it back when the publish is done, so a process holds at
most as many publishing connections as it has enqueues running at once, and keeps at most
``IDLE_CAP`` idle ones (past that they are closed). A connection is only ever used by the one
thread or greenlet that borrowed it (pika's connections are not thread-safe). One that broke
is dropped, never pooled: dramatiq's own retry inside ``enqueue`` opens a fresh one.
Consumers (worker processes) are unchanged: each keeps its own connection, as in dramatiq.
"""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

#: Idle publishing connections a process keeps open.
IDLE_CAP = 4


class PooledPublisherRabbitmqBroker(RabbitmqBroker):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._idle: list[tuple[Any, Any]] = []
        self._idle_lock = threading.Lock()

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        borrowed = self._borrow()
        try:
            return super().enqueue(message, delay=delay)
        finally:
            if borrowed:
                self._give_back()

    def _borrow(self) -> bool:
        """Give this thread/greenlet a pooled connection unless it already has its own
        (a worker thread's, or an outer enqueue's). True when it should be given back."""
        if getattr(self.state, "connection", None) is not None:
            return False
        with self._idle_lock:
            while self._idle:
                connection, channel = self._idle.pop()
                if connection.is_open and (channel is None or channel.is_open):
                    self.state.connection = connection
                    if channel is not None:
                        self.state.channel = channel
                    return True
                self._discard(connection, channel)
        return True

    def _give_back(self) -> None:
        connection = getattr(self.state, "connection", None)
        channel = getattr(self.state, "channel", None)
        if connection is None:
            return
        # Detach from this thread/greenlet without closing (dramatiq's deleters would close).
        del self.state.connection
        if channel is not None:
            del self.state.channel
        healthy = connection.is_open and (channel is None or channel.is_open)
        with self._idle_lock:
            if healthy and len(self._idle) < IDLE_CAP:
                self._idle.append((connection, channel))
                return
        self._discard(connection, channel)

    def _discard(self, connection: Any, channel: Any) -> None:
        self.channels.discard(channel)
        self.connections.discard(connection)
        try:
            if connection.is_open:
                connection.close()
        except Exception:  # noqa: S110 - a broken connection has nothing left to close
            pass

    def ping(self) -> None:
        """Raise unless RabbitMQ answers (``/readyz``): a pooled publishing connection, opened
        if there is none idle, exchanges frames with the node."""
        borrowed = self._borrow()
        try:
            self.connection.process_data_events(time_limit=0)
        finally:
            if borrowed:
                self._give_back()

    def close(self) -> None:
        with self._idle_lock:
            self._idle.clear()
        super().close()
