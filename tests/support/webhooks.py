"""Webhook bodies built from the "delivered" scenario's label and first track_updated, with the
identifiers a test picks (each keyword in ``data`` replaces that field of the body's ``data``)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from tests.fixtures.shippo import scenario


def label(transaction: str, tracking: str, ref: str, **data: Any) -> str:
    """A transaction_created for order ``ref`` (metadata ``Order <ref>``)."""
    body = json.loads(scenario("delivered")[0])
    body["data"].update(object_id=transaction, tracking_number=tracking, metadata=f"Order {ref}", **data)
    return json.dumps(body)


def track(
    tracking: str,
    transaction: str,
    scan_id: str,
    at: datetime,
    status: str = "TRANSIT",
    substatus: str = "package_departed",
    **data: Any,
) -> str:
    """One track_updated carrying one scan (its history holds only that scan: nothing to fill in)."""
    body = json.loads(scenario("delivered")[2])
    body["data"].update(tracking_number=tracking, transaction=transaction, **data)
    scan = {
        **body["data"]["tracking_status"],
        "object_id": scan_id,
        "status": status,
        "substatus": {"code": substatus, "text": substatus.replace("_", " "), "action_required": False},
        "status_date": at.isoformat() + "Z",
        "object_created": at.isoformat() + "Z",
    }
    body["data"]["tracking_status"], body["data"]["tracking_history"] = scan, [scan]
    return json.dumps(body)
