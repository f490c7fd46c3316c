"""``DELETE /api/merchants/<m>/customers?email=…|phone=…``: erase one customer's personal data
(docs/api.md, Customers; ``store/retention.py`` says what is erased and what stays)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from admin.scopes import Scope, scope
from admin.services import services
from admin.validation import Invalid
from domain.vocabulary import Channel
from store import merchants as merchant_store
from store import retention
from store.contacts import normalize_email, normalize_phone

customers_api = Blueprint("customers_api", __name__)

#: Query parameter → the channel it identifies a customer on, and how it is normalized
#: (the way orders store it: ``store/contacts.py``).
IDENTIFIERS = {
    "email": (Channel.EMAIL, normalize_email),
    "phone": (Channel.SMS, normalize_phone),
}
ONE_OF = "give exactly one of email or phone"


def _identifier() -> tuple[Channel, str]:
    given = {name: request.args.getlist(name) for name in IDENTIFIERS if name in request.args}
    if len(given) != 1:
        raise Invalid(dict.fromkeys(given or IDENTIFIERS, ONE_OF))
    ((name, values),) = given.items()
    if len(values) != 1:
        raise Invalid({name: "give it once"})
    channel, normalize = IDENTIFIERS[name]
    try:
        return channel, normalize(values[0])
    except ValueError as exc:
        raise Invalid({name: str(exc)}) from None


@customers_api.delete("/api/merchants/<slug>/customers")
@scope(Scope.MERCHANT)
def erase_customer(slug: str) -> Response:
    channel, address = _identifier()
    s = services()
    with s.database.read() as conn:
        merchant = merchant_store.require(conn, slug)
    erased = retention.erase_customer(s.database, merchant.id, channel=channel, address=address)
    return jsonify(erased.to_public())
