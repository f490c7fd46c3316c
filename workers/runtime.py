"""What actors need at run time, built once per worker process from the broker's settings."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import Any

from config import Settings
from store.database import Database


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def database(self) -> Database:
        return Database(self.settings.database_url)

    @cached_property
    def telemetry(self) -> Any:
        from workers.state import state_redis
        from workers.telemetry import Telemetry

        return Telemetry(state_redis(self.settings))

    @cached_property
    def sender(self) -> Any:
        from workers.sending import Sender

        return Sender.from_settings(self.settings, self.database)


_lock = threading.Lock()
_runtime: Runtime | None = None


def runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            from workers.broker import settings

            _runtime = Runtime(settings)
        return _runtime


def configure(settings: Settings) -> Runtime:
    """Replace the runtime (tests switching database; the broker stays as configured)."""
    global _runtime
    with _lock:
        _runtime = Runtime(settings)
        return _runtime
