"""The template context (docs/api.md, Templates): allowed names, sample data for previews, ``date``.

Context objects are plain dicts (``exception.class`` works because Jinja's attribute lookup falls
back to item lookup). Every key below is always present; optional values are ``None`` so templates
can write ``{% if shipment.tracking_url %}`` and ``{% if exception.class %}``.

Besides the contract's names the renderer adds ``locale`` (the locale being rendered, e.g.
``"es"``), which the ``date`` filter uses when called without an argument. Merchant-alert kinds
also get ``alert`` (see :data:`ALERT_FIELDS`). ``delivered`` and ``partially_delivered`` also get
``parcels`` (every parcel of the order, see :data:`PARCEL_FIELDS`; one for a single-parcel order) and
``parcels_on_the_way`` (how many are not delivered yet and have not ended without delivery).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from domain.vocabulary import MERCHANT_ALERTS, NotificationKind

from .links import carrier_name, tracking_url

#: Object-valued context names and their fields (exactly docs/api.md, Templates).
OBJECT_FIELDS: dict[str, frozenset[str]] = {
    "merchant": frozenset({"name", "support_email", "support_url"}),
    "customer": frozenset({"name", "first_name"}),
    "order": frozenset({"ref"}),
    "shipment": frozenset(
        {"carrier", "carrier_name", "tracking_number", "tracking_url", "status", "eta", "last_location"}
    ),
    "exception": frozenset({"class", "detail", "action"}),
}

#: ``alert`` fields for merchant alerts (label_failed, exception_action_required, stalled,
#: notification_failed): ``kind`` (the alert kind), ``detail`` (human summary), ``order_ref``,
#: ``error`` (provider/carrier error text, or None), ``channel`` (``email``/``sms`` of the failed
#: notification, or None).
ALERT_FIELDS: frozenset[str] = frozenset({"kind", "detail", "order_ref", "error", "channel"})

SCALAR_NAMES: frozenset[str] = frozenset({"unsubscribe_url", "locale"})

#: Kinds whose templates also get ``parcels`` and ``parcels_on_the_way`` (orders of several parcels).
PARCEL_KINDS: frozenset[NotificationKind] = frozenset(
    {NotificationKind.DELIVERED, NotificationKind.PARTIALLY_DELIVERED}
)

#: Fields of each item of ``parcels``: delivered ones first, by delivery; ``delivered_on`` a date
#: or None; ``current`` is true for the parcel the message is about (the one that just arrived).
PARCEL_FIELDS: frozenset[str] = frozenset(
    {"carrier", "carrier_name", "tracking_number", "tracking_url", "status", "delivered_on", "current"}
)
PARCEL_NAMES: frozenset[str] = frozenset({"parcels", "parcels_on_the_way"})


def context_names(kind: NotificationKind | str) -> frozenset[str]:
    """Top-level names a template of ``kind`` may use (besides Jinja globals)."""
    names = set(OBJECT_FIELDS) | SCALAR_NAMES
    if NotificationKind(kind) in MERCHANT_ALERTS:
        names.add("alert")
    if NotificationKind(kind) in PARCEL_KINDS:
        names |= PARCEL_NAMES
    return frozenset(names)


def object_fields(kind: NotificationKind | str) -> dict[str, frozenset[str]]:
    fields = dict(OBJECT_FIELDS)
    if NotificationKind(kind) in MERCHANT_ALERTS:
        fields["alert"] = ALERT_FIELDS
    return fields


# --------------------------------------------------------------------------------------------
# date filter

MONTHS: dict[str, tuple[str, ...]] = {
    "en": (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ),
    "es": (
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ),
    "fr": (
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ),
}
_PATTERNS = {"en": "{month} {day}, {year}", "es": "{day} de {month} de {year}", "fr": "{day} {month} {year}"}
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value.strip()):
        text = value.strip()
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
        except ValueError:
            try:
                return date.fromisoformat(text[:10])
            except ValueError:
                return None
    return None


def format_date(value: Any, locale: str | None = "en") -> str:
    """``March 6, 2026`` (en), ``6 de marzo de 2026`` (es), ``6 mars 2026`` (fr).

    Accepts a date, a datetime (its own date; convert time zones before) or an ISO-8601 string.
    ``None``/empty gives ``""``; an unparseable string is returned unchanged. Unknown locales
    (after trying the language prefix: ``es-MX`` → ``es``) use English.
    """
    if value is None or value == "":
        return ""
    day = _as_date(value)
    if day is None:
        return str(value)
    lang = (locale or "en").replace("_", "-").lower()
    if lang not in MONTHS:
        lang = lang.split("-", 1)[0]
    if lang not in MONTHS:
        lang = "en"
    return _PATTERNS[lang].format(month=MONTHS[lang][day.month - 1], day=day.day, year=day.year)


# --------------------------------------------------------------------------------------------
# sample context

_SAMPLE_CARRIER = "usps"
_SAMPLE_TRACKING = "9400111899223197428490"

# kind -> (shipment.status, exception class or None)
_KIND_STATE: dict[NotificationKind, tuple[str, str | None]] = {
    NotificationKind.SHIPPED: ("label_created", None),
    NotificationKind.IN_TRANSIT: ("in_transit", None),
    NotificationKind.OUT_FOR_DELIVERY: ("out_for_delivery", None),
    NotificationKind.AVAILABLE_FOR_PICKUP: ("available_for_pickup", None),
    NotificationKind.DELIVERED: ("delivered", None),
    NotificationKind.DELIVERY_ATTEMPTED: ("in_transit", "delivery_attempted"),
    NotificationKind.ADDRESS_ISSUE: ("in_transit", "address_issue"),
    NotificationKind.DELAYED: ("in_transit", "delayed"),
    NotificationKind.RETURNED_TO_SENDER: ("returning", "returned_to_sender"),
    NotificationKind.DELIVERY_FAILED: ("failed", "undeliverable"),
    NotificationKind.PARTIALLY_DELIVERED: ("delivered", None),
    NotificationKind.ETA_CHANGED: ("in_transit", None),
    NotificationKind.LABEL_FAILED: ("label_failed", "label_failed"),
    NotificationKind.EXCEPTION_ACTION_REQUIRED: ("in_transit", "address_issue"),
    NotificationKind.STALLED: ("in_transit", "stalled"),
    NotificationKind.NOTIFICATION_FAILED: ("in_transit", None),
    NotificationKind.SHIPPO_AUTH_FAILED: ("in_transit", None),
}

# exception class -> {lang: (detail, action)}; the Spanish actions avoid á/í/ó/ú (not in GSM-7)
# so the sample SMS shows the GSM-7 segment budget the default templates are written for. Actions
# end without a full stop, like the real ones (domain.normalization.CUSTOMER_ACTIONS): templates add it.
_EXCEPTION_TEXT: dict[str, dict[str, tuple[str, str]]] = {
    "delivery_attempted": {
        "en": (
            "Delivery attempted - no one available to sign.",
            "Schedule a redelivery or pick the parcel up at your local post office",
        ),
        "es": (
            "Intento de entrega: no había nadie para firmar.",
            "Programa una nueva entrega o recoge el paquete en tu oficina de correos",
        ),
    },
    "address_issue": {
        "en": (
            "The carrier could not find the delivery address.",
            "Reply to this message with your full address, including apartment number",
        ),
        "es": (
            "El transportista no encontró la dirección de entrega.",
            "Confirma tu domicilio completo respondiendo a este mensaje",
        ),
    },
    "delayed": {
        "en": ("Weather delay in the carrier network.", "No action needed - we will keep you posted"),
        "es": (
            "Retraso por mal tiempo en la red del transportista.",
            "No tienes que hacer nada: te mantendremos informado",
        ),
    },
    "returned_to_sender": {
        "en": ("The parcel is on its way back to us.", "Contact us to arrange a new shipment or a refund"),
        "es": (
            "El paquete está volviendo a nosotros.",
            "Ponte en contacto con nosotros para reenviar el pedido o reembolsarlo",
        ),
    },
    "undeliverable": {
        "en": ("The carrier could not deliver the parcel.", "Contact us so we can sort it out"),
        "es": (
            "El transportista no pudo entregar el paquete.",
            "Ponte en contacto con nosotros para solucionarlo",
        ),
    },
    "label_failed": {
        "en": (
            "Carrier rejected the label: invalid destination ZIP code.",
            "Fix the address and buy a new label",
        ),
        "es": (
            "El transportista rechazó la etiqueta: código postal no válido.",
            "Corrige la dirección y compra una nueva etiqueta",
        ),
    },
    "stalled": {
        "en": ("No carrier scan for 96 hours.", "Contact the carrier to open a trace"),
        "es": (
            "Sin escaneos del transportista en 96 horas.",
            "Contacta al transportista para abrir un rastreo",
        ),
    },
}

_ALERT_TEXT: dict[NotificationKind, tuple[str, str | None, str | None]] = {
    # kind -> (detail, error, channel)
    NotificationKind.LABEL_FAILED: (
        "Shippo could not buy the label for order 1042.",
        "USPS: Invalid destination ZIP code 9021",
        None,
    ),
    NotificationKind.EXCEPTION_ACTION_REQUIRED: (
        "Order 1042 needs action: the carrier could not find the delivery address.",
        None,
        None,
    ),
    NotificationKind.STALLED: ("Order 1042 has had no carrier scan for 96 hours.", None, None),
    NotificationKind.NOTIFICATION_FAILED: (
        "The SMS about order 1042 could not be sent.",
        "Twilio 21211: The 'To' number is not a valid phone number.",
        "sms",
    ),
    NotificationKind.SHIPPO_AUTH_FAILED: (
        "Shippo answered 401 Unauthorized to your Shippo API token.",
        "401 GET /tracks/usps/9400111899223197428490: Invalid token.",
        None,
    ),
}


def empty_exception() -> dict[str, Any]:
    return {"class": None, "detail": None, "action": None}


def sample_context(kind: NotificationKind | str, locale: str = "en") -> dict[str, Any]:
    """Realistic context for previews and validation; every contract name present."""
    kind = NotificationKind(kind)
    lang = (locale or "en").replace("_", "-").lower().split("-", 1)[0]
    lang = lang if lang in ("en", "es") else "en"
    status, exc_class = _KIND_STATE[kind]
    exception = empty_exception()
    if exc_class is not None:
        detail, action = _EXCEPTION_TEXT[exc_class][lang]
        exception = {"class": exc_class, "detail": detail, "action": action}
    ctx: dict[str, Any] = {
        "merchant": {
            "name": "Northwind Goods",
            "support_email": "help@northwind.example",
            "support_url": "https://northwind.example/help",
        },
        "customer": {
            "name": "Ana García" if lang == "es" else "Jane Doe",
            "first_name": "Ana" if lang == "es" else "Jane",
        },
        "order": {"ref": "1042"},
        "shipment": {
            "carrier": _SAMPLE_CARRIER,
            "carrier_name": carrier_name(_SAMPLE_CARRIER),
            "tracking_number": _SAMPLE_TRACKING,
            "tracking_url": tracking_url(
                _SAMPLE_CARRIER, _SAMPLE_TRACKING, merchant_template=None, provider_url=None
            ),
            "status": status,
            "eta": None if kind in PARCEL_KINDS else date(2026, 3, 6),
            "last_location": "Memphis, TN",
        },
        "exception": exception,
        "unsubscribe_url": "https://notify.northwind.example/u/3f9a2c7e",
        "locale": locale or "en",
    }
    if kind in PARCEL_KINDS:
        ctx.update(_sample_parcels(kind, ctx["shipment"]))
    if kind in MERCHANT_ALERTS:
        detail, error, channel = _ALERT_TEXT[kind]
        ctx["alert"] = {
            "kind": kind.value,
            "detail": detail,
            "order_ref": "1042",
            "error": error,
            "channel": channel,
        }
        ctx["unsubscribe_url"] = None
    return ctx


_SAMPLE_OTHER = ("ups", "1Z999AA10123456784")
_SAMPLE_THIRD = ("fedex", "794698374627")


def _sample_parcels(
    kind: NotificationKind, shipment: dict[str, Any], *, several: bool = False
) -> dict[str, Any]:
    """``delivered``: a single-parcel order (``several``: of two parcels, one delivered earlier);
    ``partially_delivered``: of three, one delivered earlier, this one now, one still on the way."""

    def parcel(carrier: str, number: str, status: str, on: date | None, current: bool) -> dict[str, Any]:
        return {
            "carrier": carrier,
            "carrier_name": carrier_name(carrier),
            "tracking_number": number,
            "tracking_url": tracking_url(carrier, number, merchant_template=None, provider_url=None),
            "status": status,
            "delivered_on": on,
            "current": current,
        }

    earlier = parcel(*_SAMPLE_OTHER, "delivered", date(2026, 3, 4), False)
    this = parcel(shipment["carrier"], shipment["tracking_number"], "delivered", date(2026, 3, 6), True)
    if kind is NotificationKind.DELIVERED:
        return {"parcels": [earlier, this] if several else [this], "parcels_on_the_way": 0}
    coming = parcel(*_SAMPLE_THIRD, "in_transit", None, False)
    return {"parcels": [earlier, this, coming], "parcels_on_the_way": 1}


def several_parcels_context(kind: NotificationKind | str, locale: str = "en") -> dict[str, Any]:
    """:func:`sample_context` of an order of several parcels (``delivered``: the order-level message)."""
    ctx = sample_context(kind, locale)
    if NotificationKind(kind) in PARCEL_KINDS:
        ctx.update(_sample_parcels(NotificationKind(kind), ctx["shipment"], several=True))
    return ctx


def sparse_context(kind: NotificationKind | str, locale: str = "en") -> dict[str, Any]:
    """The sample with every optional value missing (no carrier, tracking number or link, no ETA,
    no names...); merchant alerts also without order and shipment status (an alert may have neither).

    Validation renders against this too, so a template that only works when everything is known
    is caught at save time.
    """
    ctx = sample_context(kind, locale)
    ctx["merchant"] = {**ctx["merchant"], "support_email": None, "support_url": None}
    ctx["customer"] = {"name": None, "first_name": None}
    ctx["shipment"] = {
        **ctx["shipment"],
        "carrier": None,
        "carrier_name": None,
        "tracking_number": None,
        "tracking_url": None,
        "eta": None,
        "last_location": None,
    }
    ctx["exception"] = {**ctx["exception"], "detail": None, "action": None}
    ctx["unsubscribe_url"] = None
    if "parcels" in ctx:
        ctx["parcels"] = [
            {
                **p,
                "carrier": None,
                "carrier_name": None,
                "tracking_number": None,
                "tracking_url": None,
                "delivered_on": None,
            }
            for p in ctx["parcels"]
        ]
    if "alert" in ctx:
        ctx["alert"] = {**ctx["alert"], "detail": None, "error": None, "channel": None, "order_ref": None}
        ctx["order"] = {"ref": None}
        ctx["shipment"]["status"] = None
    return ctx
