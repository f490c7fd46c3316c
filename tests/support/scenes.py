"""Starting points several integration tests share, set up through the real apps and worker."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.fixtures.shippo import scenario


def label_shipped_to_jane(system: Any, **merchant_profile: Any) -> dict[str, Any]:
    """Merchant ``acme`` (refs ``Order N``) with order 1001 registered for jane@example.com, and the
    label of the "delivered" scenario processed by a running worker: the ``shipped`` email is sent
    (to the outbox unless the system has SMTP). Returns the merchant."""
    merchant: dict[str, Any] = system.create_merchant(order_ref_pattern=r"Order (\d+)", **merchant_profile)
    response = system.admin.put(
        "/api/merchants/acme/orders/1001",
        json={"customer": {"email": "jane@example.com"}},
        headers=system.auth(),
    )
    assert response.status_code in (200, 201), response.get_json()
    system.post(merchant, scenario("delivered")[0])
    system.start_worker()
    system.drain()
    return merchant


def claimed_notification(
    system: Any, *, channel: str, key: str, to_address: str, age: timedelta = timedelta(0), **context: Any
) -> int:
    """A customer ``shipped`` notification of order 1001's first shipment, planted as if an attempt
    claimed it ``age`` ago and is (or was) inside its provider call. Returns its id."""
    from store import notifications as notification_store
    from store.database import utcnow
    from tests.support import rows

    with system.database.write() as conn:
        notification_id = rows.notification(
            system.database,
            conn,
            1,
            order_id=1,
            shipment_id=1,
            channel=channel,
            key=key,
            to_address=to_address,
        )
        assert notification_id is not None
        notification_store.update(
            conn,
            notification_id,
            sending_at=utcnow() - age,
            attempts=1,
            **({"context": context} if context else {}),
        )
    return int(notification_id)
