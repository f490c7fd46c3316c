"""What actors and jobs need at run time, built once per process from its settings.

The process's entry point sets it (``configure``): ``workers/main.py`` for workers,
``workers/clock.py`` for the scheduler, the test harness for tests. ``runtime()`` before that
is an error, not a guess from the environment."""

from __future__ import annotations

import threading
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING

from config import Settings
from store.database import Database

if TYPE_CHECKING:  # types only: these modules are imported when first used
    from workers.sending import Sender
    from workers.telemetry import Telemetry


class Runtime:
    def __init__(self, settings: Settings, *, started_at: datetime | None = None) -> None:
        self.settings = settings
        #: When this process started, if it counts (the scheduler's start-up grace for "no live
        #: worker", workers/health.py); None: no grace.
        self.started_at = started_at

    @cached_property
    def database(self) -> Database:
        return Database(self.settings.database_url)

    @cached_property
    def telemetry(self) -> Telemetry:
        from workers.state import state_redis
        from workers.telemetry import Telemetry

        return Telemetry(state_redis(self.settings))

    @cached_property
    def sender(self) -> Sender:
        from workers.sending import Sender

        return Sender.from_settings(self.settings, self.database, telemetry=self.telemetry)


_lock = threading.Lock()
_runtime: Runtime | None = None


def runtime() -> Runtime:
    with _lock:
        if _runtime is None:
            raise RuntimeError(
                "no runtime: the process's entry point calls workers.runtime.configure(settings)"
            )
        return _runtime


def configure(settings: Settings, *, started_at: datetime | None = None) -> Runtime:
    """Set (or replace: tests switching database) this process's runtime."""
    global _runtime
    with _lock:
        _runtime = Runtime(settings, started_at=started_at)
        return _runtime
