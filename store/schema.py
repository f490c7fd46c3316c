"""SQLAlchemy Core schema. Unique constraints carry idempotency (docs/architecture.md, Idempotency):

- ``deliveries (merchant_id, event_id)``: a webhook's effect is committed at most once;
- ``shipment_scans (shipment_id, scan_id)``: a carrier scan enters history once;
- ``notifications (idempotency_key)``: a customer hears about one occurrence once;
- ``outbox_messages (notification_id)``: a captured message is written once.

``platform_events`` is a transactional outbox: rows are written in the same transaction as
the state change they describe and published to the platforms' exchange afterwards
(``workers/platform_events.py``).
"""

from __future__ import annotations

import sqlalchemy as sa

from store.types import UTCDateTime

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: Every timestamp column: stored in UTC, read back aware in UTC on both databases.
TS = UTCDateTime()

merchants = sa.Table(
    "merchants",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("slug", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("profile", sa.JSON, nullable=False),  # sender identities, locale, timezone, notify, patterns
    # secrets at rest (store/vault.py): the token as a SHA-256 digest (checked) and encrypted (shown);
    # the previous token as a digest only; HMAC secrets as a list of Fernet tokens
    sa.Column("webhook_token_digest", sa.String(64), nullable=False),
    sa.Column("webhook_token_encrypted", sa.Text, nullable=False),
    sa.Column("previous_token_digest", sa.String(64)),
    sa.Column("previous_token_expires_at", TS),
    sa.Column("hmac_secrets_encrypted", sa.JSON, nullable=False),
    # the Shippo API token (encrypted; its digest says whether it is set and whether it is the one
    # Shippo refused: calls pause while shippo_auth_failed_digest equals it)
    sa.Column("shippo_api_token_encrypted", sa.Text),
    sa.Column("shippo_api_token_digest", sa.String(64)),
    sa.Column("shippo_auth_failed_digest", sa.String(64)),
    sa.Column("shippo_auth_failed_at", TS),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("merchant_id", sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column("event_id", sa.String(255), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("received_at", TS, nullable=False),
    sa.Column("processed_at", TS, nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),  # processed | ignored
    sa.Column("body", sa.Text, nullable=False),  # verbatim, as Shippo sent it
    sa.UniqueConstraint("merchant_id", "event_id", name="uq_deliveries_merchant_event"),
    sa.Index("ix_deliveries_received", "merchant_id", "received_at"),
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("merchant_id", sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column("ref", sa.String(200), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("exception", sa.String(32)),  # class of an open shipment exception, for filtering
    sa.Column("customer", sa.JSON, nullable=False),
    sa.Column("notify_email", sa.Boolean, nullable=False),
    sa.Column("notify_sms", sa.Boolean, nullable=False),
    sa.Column("registered", sa.Boolean, nullable=False),  # false until the platform PUTs it
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.UniqueConstraint("merchant_id", "ref", name="uq_orders_merchant_ref"),
    sa.Index("ix_orders_merchant", "merchant_id", "id"),  # the unfiltered listing, newest first
    sa.Index("ix_orders_merchant_status", "merchant_id", "status", "id"),
    sa.Index("ix_orders_merchant_exception", "merchant_id", "exception", "id"),
)

shipments = sa.Table(
    "shipments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("merchant_id", sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column("order_id", sa.ForeignKey("orders.id")),
    sa.Column("order_ref", sa.String(200)),  # from Shippo metadata; kept to attach to a later order
    sa.Column("transaction_id", sa.String(64)),
    sa.Column("carrier", sa.String(64)),
    sa.Column("tracking_number", sa.String(128)),
    sa.Column("status", sa.String(32)),
    sa.Column("exception", sa.String(32)),
    sa.Column("last_scan_at", TS),
    sa.Column("state", sa.JSON, nullable=False),  # domain.shipment.ShipmentState.to_dict()
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("shippo_polled_at", TS),  # last looked up at Shippo by reconciliation
    sa.UniqueConstraint("merchant_id", "transaction_id", name="uq_shipments_transaction"),
    sa.UniqueConstraint("merchant_id", "carrier", "tracking_number", name="uq_shipments_tracking"),
    sa.Index("ix_shipments_tracking_number", "merchant_id", "tracking_number"),
    sa.Index("ix_shipments_order", "order_id"),
    sa.Index("ix_shipments_pending_ref", "merchant_id", "order_ref"),
    sa.Index("ix_shipments_stall", "status", "last_scan_at"),
    sa.Index("ix_shipments_quiet", "updated_at"),  # reconciliation: quiet shipments, oldest first
)

shipment_scans = sa.Table(
    "shipment_scans",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("shipment_id", sa.ForeignKey("shipments.id"), nullable=False),
    sa.Column("scan_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("substatus", sa.String(64)),
    sa.Column("status_date", TS, nullable=False),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("location", sa.String(200), nullable=False),
    sa.UniqueConstraint("shipment_id", "scan_id", name="uq_shipment_scans_scan"),
    sa.Index("ix_shipment_scans_date", "shipment_id", "status_date"),
)

shipment_changes = sa.Table(
    "shipment_changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("shipment_id", sa.ForeignKey("shipments.id"), nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Column("recorded_at", TS, nullable=False),
    sa.Column("change", sa.JSON, nullable=False),  # domain.shipment.Change.to_dict()
    sa.Index("ix_shipment_changes_shipment", "shipment_id", "id"),
)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("merchant_id", sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column("order_id", sa.ForeignKey("orders.id")),
    sa.Column("shipment_id", sa.ForeignKey("shipments.id")),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("audience", sa.String(16), nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("to_address", sa.String(320)),
    sa.Column("locale", sa.String(16)),
    sa.Column("context", sa.JSON),  # extra alert context (merchant alerts)
    sa.Column("subject", sa.Text),
    sa.Column("body_text", sa.Text),
    sa.Column("body_html", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("provider_id", sa.String(255)),
    sa.Column("error", sa.Text),
    sa.Column("error_code", sa.String(32)),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("scheduled_for", TS),
    sa.Column("sending_at", TS),
    sa.Column("sent_at", TS),
    sa.Column("updated_at", TS, nullable=False),
    sa.Index("ix_notifications_order", "order_id", "id"),
    sa.Index("ix_notifications_provider", "provider_id"),
    sa.Index("ix_notifications_status", "status", "created_at"),
)

outbox_messages = sa.Table(
    "outbox_messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("notification_id", sa.ForeignKey("notifications.id"), nullable=False, unique=True),
    sa.Column("merchant_id", sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("to_address", sa.String(320), nullable=False),
    sa.Column("sender", sa.String(320)),
    sa.Column("subject", sa.Text),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("html", sa.Text),
    sa.Column("headers", sa.JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_outbox_merchant", "merchant_id", "id"),
)

templates = sa.Table(
    "templates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("merchant_id", sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("locale", sa.String(16), nullable=False),
    sa.Column("subject", sa.Text),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("html", sa.Text),
    sa.Column("updated_at", TS, nullable=False),
    sa.UniqueConstraint("merchant_id", "kind", "channel", "locale", name="uq_templates_key"),
)

template_versions = sa.Table(
    "template_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("merchant_id", sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("locale", sa.String(16), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("subject", sa.Text),
    sa.Column("text", sa.Text),  # null: this version went back to the default template
    sa.Column("html", sa.Text),
    sa.Column("saved_by", sa.String(200), nullable=False),  # "admin" or "key:<id>"
    sa.Column("saved_at", TS, nullable=False),
    sa.Column("change", sa.JSON, nullable=False),  # what changed against the previous version
    sa.UniqueConstraint(
        "merchant_id", "kind", "channel", "locale", "version", name="uq_template_versions_version"
    ),
)

merchant_keys = sa.Table(
    "merchant_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("merchant_id", sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column(
        "digest", sa.String(64), nullable=False, unique=True
    ),  # SHA-256 of the key; the key is shown once
    sa.Column("prefix", sa.String(16), nullable=False),  # to tell keys apart in a listing
    sa.Column("label", sa.String(200)),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("last_used_at", TS),
    sa.Column("revoked_at", TS),
    sa.Index("ix_merchant_keys_merchant", "merchant_id", "id"),
)

opt_outs = sa.Table(
    "opt_outs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("merchant_id", sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("address", sa.String(320), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.UniqueConstraint("merchant_id", "channel", "address", name="uq_opt_outs_address"),
)

platform_events = sa.Table(
    "platform_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("merchant_id", sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column("order_id", sa.ForeignKey("orders.id")),
    sa.Column("shipment_id", sa.ForeignKey("shipments.id")),
    sa.Column(
        "event_type", sa.String(64), nullable=False
    ),  # order.status_changed, shipment.exception_opened …
    sa.Column("payload", sa.JSON, nullable=False),  # the message body exactly as published
    sa.Column("created_at", TS, nullable=False),
    sa.Column("published_at", TS),  # null until the broker took it
    sa.Index("ix_platform_events_pending", "published_at", "id"),
)
