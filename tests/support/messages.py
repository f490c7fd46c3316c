"""The outgoing messages the channel tests send: one email and one SMS of a Northwind order.
A test takes one and changes what it is about: ``dataclasses.replace(NORTHWIND_EMAIL, html=None)``."""

from __future__ import annotations

from domain.vocabulary import Channel
from notifiers.channel import OutgoingMessage

NORTHWIND_EMAIL = OutgoingMessage(
    channel=Channel.EMAIL,
    to="jane@example.com",
    sender="Northwind Goods <orders@northwind.example>",
    subject="Your order 1042 has shipped",
    text="Hi Jane,\n\nTrack: https://tools.usps.com/go/TrackConfirmAction?tLabels=9400",
    html='<p>Hi Jane,</p><p><a href="https://tools.usps.com/">Track</a></p>',
    idempotency_key="northwind:1042:shp_1:shipped:email",
    reply_to="help@northwind.example",
    list_unsubscribe="https://notify.northwind.example/u/3f9a",
)

NORTHWIND_SMS = OutgoingMessage(
    channel=Channel.SMS,
    to="+15558675310",
    sender="+15005550006",
    subject=None,
    text="Northwind Goods: your order 1042 has shipped with USPS.",
    html=None,
    idempotency_key="northwind:1042:shp_1:shipped:sms",
    status_callback="https://hooks.example/webhooks/twilio/northwind/status",
)
