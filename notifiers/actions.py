"""``exception.action`` in the customer's language: what the customer should do now.

English comes from the domain's table (``domain.normalization.CUSTOMER_ACTIONS``); other
languages are translations of it, keyed the same way. Unknown languages fall back to English.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from domain.normalization import CUSTOMER_ACTIONS
from domain.vocabulary import ExceptionClass

X = ExceptionClass

TRANSLATIONS: Mapping[str, Mapping[ExceptionClass, str]] = MappingProxyType(
    {
        "es": MappingProxyType(
            {
                X.DELIVERY_ATTEMPTED: "Reprograma la entrega con el transportista o recoge el paquete en su oficina",
                X.ADDRESS_ISSUE: "Contacta con nosotros o con el transportista para corregir la direccion de entrega",
                X.DELAYED: "No tienes que hacer nada; el transportista lo entregara lo antes posible",
                X.HELD: "Contacta con el transportista para liberar o recoger el paquete",
                X.DAMAGED: "No tienes que hacer nada; lo estamos revisando con el transportista",
                X.LOST: "No tienes que hacer nada; lo estamos revisando con el transportista",
                X.UNDELIVERABLE: "Contacta con nosotros para organizar una nueva entrega",
                X.RETURNED_TO_SENDER: "Contacta con nosotros si todavia quieres el paquete",
                X.CONTACT_CARRIER: "Contacta con el transportista para mas informacion",
                X.DISPOSED: "Contacta con nosotros para organizar un reemplazo",
                X.STALLED: "No tienes que hacer nada; lo estamos consultando con el transportista",
                X.LABEL_FAILED: "No tienes que hacer nada",
            }
        ),
    }
)


def customer_action(exception_class: str | None, locale: str | None) -> str | None:
    if not exception_class:
        return None
    try:
        cls = ExceptionClass(exception_class)
    except ValueError:
        return None
    lang = (locale or "en").replace("_", "-").split("-", 1)[0].lower()
    return TRANSLATIONS.get(lang, {}).get(cls) or CUSTOMER_ACTIONS.get(cls)
