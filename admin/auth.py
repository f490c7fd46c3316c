"""Admin authentication: ``Authorization: Bearer <PARCELHOOK_ADMIN_TOKEN>`` for the API.

The dashboard (a browser cannot add a bearer header to a page load) signs in once with
the same token at ``/ops/login``; that sets a signed, HttpOnly, SameSite=Strict cookie.
Requests authenticated by cookie that change state must also carry the
``X-Parcelhook-CSRF`` header the page reads from its own markup.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import Flask, Response, jsonify, request, session

OPEN_PATHS = ("/ops/login", "/static/", "/healthz")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def install(app: Flask, token: str) -> None:
    app.secret_key = hashlib.sha256(b"parcelhook-admin-session:" + token.encode()).digest()
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_NAME="ph_admin"
    )
    expected = token.encode()

    @app.before_request
    def _authenticate() -> Response | tuple[Response, int] | None:
        if request.path.startswith(OPEN_PATHS):
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected):
            return None
        if session.get("admin") is True:
            if request.method in SAFE_METHODS:
                return None
            csrf = request.headers.get("X-Parcelhook-CSRF", "")
            if csrf and hmac.compare_digest(csrf.encode(), str(session.get("csrf", "")).encode()):
                return None
            return jsonify({"error": "csrf", "message": "missing or wrong X-Parcelhook-CSRF header"}), 403
        if request.path.startswith("/ops") and request.method in SAFE_METHODS:
            from flask import redirect

            return redirect("/ops/login")  # type: ignore[return-value]
        return jsonify({"error": "unauthorized", "message": "missing or wrong bearer token"}), 401


def sign_in(token: str, given: str) -> bool:
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return False
    session.clear()
    session["admin"] = True
    session["csrf"] = secrets.token_urlsafe(24)
    return True


def csrf_token() -> str:
    return str(session.get("csrf", ""))
