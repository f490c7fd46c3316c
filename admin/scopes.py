"""Who may call each route of the admin app: every view declares its :class:`Scope` with
``@scope(...)``, and ``admin/auth.py`` reads the declaration before the view runs. A route
that declares nothing is refused to everyone, the admin token included (it fails closed), and
``tests/unit/test_route_scopes.py`` fails when a rule of ``app.url_map`` has no declaration.

| scope | who | the merchant |
|---|---|---|
| ``OPEN`` | anyone (sign-in forms, static files) | — |
| ``ADMIN`` | the admin token only; a merchant key gets 403 | — |
| ``MERCHANT`` | the admin token, or a key of the merchant in the path's ``<slug>`` | another merchant's ``<slug>``: 404, exactly as an unknown merchant |
| ``MERCHANT_FILTERED`` | the admin token (all merchants), or a merchant key (its own merchant only) | ``?merchant=`` of another merchant: 404; none: the key's own merchant (:func:`admin.auth.merchant_filter`) |

``admin_fields`` names body fields a merchant key may not send (credentials): a key's request
carrying one is a 403 naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from flask import Flask

F = TypeVar("F", bound=Callable[..., Any])

#: Where a view function keeps its declaration.
ATTRIBUTE = "__parcelhook_scope__"
#: ``app.extensions`` key of declarations for views we do not write ourselves (static files).
EXTENSION = "parcelhook.scopes"


class Scope(StrEnum):
    OPEN = "open"
    ADMIN = "admin"
    MERCHANT = "merchant"
    MERCHANT_FILTERED = "merchant_filtered"


@dataclass(frozen=True)
class Declaration:
    scope: Scope
    admin_fields: frozenset[str] = frozenset()


def scope(declared: Scope, *, admin_fields: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Declare who may call the decorated view (put it under the route decorator)."""

    def mark(view: F) -> F:
        setattr(view, ATTRIBUTE, Declaration(declared, frozenset(admin_fields)))
        return view

    return mark


def declare(app: Flask, endpoint: str, declared: Scope) -> None:
    """Declare the scope of an endpoint whose view is not ours (Flask's static routes)."""
    app.extensions.setdefault(EXTENSION, {})[endpoint] = Declaration(declared)


def declaration(app: Flask, endpoint: str) -> Declaration | None:
    """The endpoint's declaration; ``None``: it declared nothing (refused)."""
    view = app.view_functions.get(endpoint)
    found = getattr(view, ATTRIBUTE, None)
    if isinstance(found, Declaration):
        return found
    declared: dict[str, Declaration] = app.extensions.get(EXTENSION, {})
    return declared.get(endpoint)
