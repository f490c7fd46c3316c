"""Webhook deliveries as the receiver records them in telemetry (``Telemetry.webhook(**delivery(...))``),
for tests that feed the ops views and alerts without going through the receiver."""

from __future__ import annotations

from datetime import UTC, datetime

from workers.telemetry import WebhookObservation


def delivery(
    merchant: str = "acme",
    outcome: str = "queued",
    status_code: int = 200,
    reason: str | None = None,
    *,
    event: str = "track_updated",
    latency_s: float = 0.01,
    at: datetime | None = None,
) -> WebhookObservation:
    """One delivery; by default a ``track_updated`` for acme, queued, now."""
    return WebhookObservation(
        merchant=merchant,
        event=event,
        outcome=outcome,
        status_code=status_code,
        reason=reason,
        latency_s=latency_s,
        at=at or datetime.now(UTC),
    )
