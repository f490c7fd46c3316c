"""Admin authentication and authorization.

Who is asking (one of, in this order):

- ``Authorization: Bearer <PARCELHOOK_ADMIN_TOKEN>`` (constant time): the admin;
- ``Authorization: Bearer phk_…``: a live merchant key (``store/keys.py``): that merchant;
- the signed session cookie set by a sign-in form: ``/ops/login`` (the admin token) or
  ``/m/<slug>/login`` (the admin token, or a key of that merchant). A browser cannot add a bearer
  header to a page load; requests authenticated by cookie that change state must also carry the
  ``X-Parcelhook-CSRF`` header the page reads from its own markup. A key's session re-checks the
  key on every request, so revoking it ends the session too.

What they may do: each view's declared :class:`admin.scopes.Scope` (read here, before the view
runs; a route without a declaration is refused to everyone). A merchant key gets 403 on admin
routes and 404 on another merchant's (the very answer of an unknown merchant: a key cannot
learn which merchants exist).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

from flask import Flask, g, redirect, request, session
from werkzeug.wrappers import Response

from admin.scopes import Declaration, Scope, declaration
from admin.services import services
from ingest.errors import error_response
from store import keys as key_store
from store.keys import KeyHolder

log = logging.getLogger("parcelhook.admin")

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
#: The merchant page: signed out, a page load goes to its sign-in form.
MERCHANT_PAGE = "merchant_page.page"


@dataclass(frozen=True)
class Principal:
    """Who a request speaks for: the admin (``holder`` None) or one merchant's key."""

    holder: KeyHolder | None = None
    by_session: bool = False

    @property
    def name(self) -> str:
        """For records of who did what (``admin``, ``key phk_AbCdEfGh``)."""
        return "admin" if self.holder is None else f"key {self.holder.key_prefix}"


def install(app: Flask, token: str) -> None:
    app.secret_key = hashlib.sha256(b"parcelhook-admin-session:" + token.encode()).digest()
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_NAME="ph_admin"
    )
    expected = token.encode()

    @app.before_request
    def _guard() -> Response | None:
        endpoint = request.endpoint
        declared = declaration(app, endpoint) if endpoint else None
        if declared is not None and declared.scope is Scope.OPEN:
            return None
        principal = _authenticate(expected)
        if isinstance(principal, Response):
            return principal
        g.principal = principal
        if endpoint is None:
            return None  # no such route / method: werkzeug's own 404 / 405
        if declared is None:
            log.error("admin route %s declares no scope: refused (admin/scopes.py)", endpoint)
            return error_response(
                403, "forbidden", f"route {endpoint} declares no scope, so it is refused (admin/scopes.py)"
            )
        return _authorize(declared, principal.holder)


def _authenticate(expected: bytes) -> Principal | Response:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() == "bearer" and given:
        if hmac.compare_digest(given.encode(), expected):
            return Principal()
        if key_store.looks_like_key(given):
            holder = key_store.authenticate(services().database, given)
            if holder is not None:
                return Principal(holder)
    by_session = _session_principal()
    if by_session is not None:
        if request.method in SAFE_METHODS:
            return by_session
        csrf = request.headers.get("X-Parcelhook-CSRF", "")
        if csrf and hmac.compare_digest(csrf.encode(), str(session.get("csrf", "")).encode()):
            return by_session
        return error_response(403, "csrf", "missing or wrong X-Parcelhook-CSRF header")
    if request.method in SAFE_METHODS:
        if request.path.startswith("/ops"):
            return redirect("/ops/login")
        if request.endpoint == MERCHANT_PAGE and request.view_args:
            return redirect(f"/m/{request.view_args['slug']}/login")
    return error_response(401, "unauthorized", "missing or wrong bearer token")


def _session_principal() -> Principal | None:
    if session.get("admin") is True:
        return Principal(by_session=True)
    key_id = session.get("key_id")
    if isinstance(key_id, int):
        holder = key_store.live(services().database, key_id)
        if holder is not None:
            return Principal(holder, by_session=True)
        session.clear()  # the key was revoked: so is its session
    return None


def _authorize(declared: Declaration, holder: KeyHolder | None) -> Response | None:
    if holder is None:
        return None  # the admin may do everything
    if declared.scope is Scope.ADMIN:
        return error_response(
            403, "forbidden", "this route needs the admin token; a merchant key cannot use it"
        )
    if declared.scope is Scope.MERCHANT:
        slug = (request.view_args or {}).get("slug")
        if slug != holder.merchant_slug:
            return error_response(404, "not_found", f"unknown merchant {slug!r}")
    elif declared.scope is Scope.MERCHANT_FILTERED:
        for asked in request.args.getlist("merchant"):
            if asked and asked != holder.merchant_slug:
                return error_response(404, "not_found", f"unknown merchant {asked!r}")
    if declared.admin_fields:
        body = request.get_json(silent=True)
        named = sorted(declared.admin_fields & set(body)) if isinstance(body, dict) else []
        if named:
            return error_response(
                403,
                "forbidden",
                f"a merchant key cannot change {', '.join(named)} (credentials: the admin token only)",
                fields=dict.fromkeys(named, "only the admin token can change it"),
            )
    return None


def principal() -> Principal:
    """Who the current request speaks for (set before every non-open view)."""
    found = g.get("principal")
    if not isinstance(found, Principal):
        raise RuntimeError("no principal: an open route asked who is calling")
    return found


def merchant_filter() -> str | None:
    """The merchant a ``MERCHANT_FILTERED`` listing shows: a key's own, else ``?merchant=``."""
    found = g.get("principal")  # None only in an app without this module's guard (a test app)
    if isinstance(found, Principal) and found.holder is not None:
        return found.holder.merchant_slug
    return request.args.get("merchant") or None


def sign_in(token: str, given: str) -> bool:
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return False
    _new_session()
    session["admin"] = True
    return True


def sign_in_merchant(token: str, slug: str, given: str) -> bool:
    """The merchant page's sign-in: the admin token, or a live key of merchant ``slug``."""
    given = given.strip()
    if sign_in(token, given):
        return True
    if not key_store.looks_like_key(given):
        return False
    holder = key_store.authenticate(services().database, given)
    if holder is None or holder.merchant_slug != slug:
        return False
    _new_session()
    session["key_id"] = holder.key_id
    return True


def _new_session() -> None:
    session.clear()
    session["csrf"] = secrets.token_urlsafe(24)


def csrf_token() -> str:
    return str(session.get("csrf", ""))
