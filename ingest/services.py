"""What the receiver's blueprints share, and how they reach it: ``services()`` (the way
Flask's tutorial keeps ``get_db()`` in ``db.py``). ``ingest/app.py`` builds it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import dramatiq
from flask import current_app
from redis import Redis

from config import Settings
from ingest.merchant_cache import MerchantCache
from ingest.queue import EventQueue
from store.database import Database
from workers.telemetry import Telemetry

#: Where the app keeps its ``Services`` (``app.extensions``).
EXTENSION = "parcelhook"


@dataclass(frozen=True)
class Services:
    settings: Settings
    broker: dramatiq.Broker
    database: Database
    merchants: MerchantCache
    queue: EventQueue
    redis: Redis
    telemetry: Telemetry


def services() -> Services:
    """The current app's services (inside a request or an app context)."""
    return cast(Services, current_app.extensions[EXTENSION])
