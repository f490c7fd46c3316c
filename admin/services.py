"""What the admin blueprints (and the ops CLI) share, and how a blueprint reaches it:
``services()`` (the way Flask's tutorial keeps ``get_db()`` in ``db.py``), plus ``json_body()``
for the request body. ``admin/app.py`` builds it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from flask import current_app, request
from redis import Redis

from admin.validation import Invalid
from config import Settings
from store.database import Database
from workers.broker import QUEUES
from workers.state import state_redis
from workers.telemetry import Telemetry

#: Where the app keeps its ``Services`` (``app.extensions``).
EXTENSION = "parcelhook"


@dataclass(frozen=True)
class Services:
    """Settings, database, the broker's (or state) Redis and the telemetry kept there."""

    settings: Settings
    database: Database
    redis: Redis
    telemetry: Telemetry
    queues: tuple[str, ...] = QUEUES

    @classmethod
    def from_settings(
        cls, settings: Settings, database: Database | None = None, redis_client: Redis | None = None
    ) -> Services:
        client = redis_client or state_redis(settings)
        return cls(settings, database or Database(settings.database_url), client, Telemetry(client))

    @property
    def namespace(self) -> str:
        return self.settings.broker_namespace


def services() -> Services:
    """The current app's services (inside a request or an app context)."""
    return cast(Services, current_app.extensions[EXTENSION])


def json_body() -> Any:
    body = request.get_json(silent=True)
    if body is None:
        raise Invalid({"body": "must be a JSON object (Content-Type: application/json)"})
    return body
