"""How the admin app answers an error: the one JSON shape of both apps (``ingest/errors.py``),
``{"error": <word>, "message": <text>}``, plus ``"fields"`` on a 422.

| raised | status | error |
|---|---|---|
| :class:`admin.validation.Invalid` | 422 | ``invalid`` (+ ``fields``) |
| :class:`store.errors.NotFound` | 404 | ``not_found`` |
| :class:`store.errors.Conflict` | 409 | ``conflict`` |
| :class:`store.errors.StorageUnavailable` | 503 | ``unavailable`` |
| werkzeug's own (no route, wrong method, …) | its code | its name (``not_found``, ``method_not_allowed``) |
| anything else (a bug) | 500 | ``internal_error`` (logged) |
"""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from admin.validation import Invalid
from ingest.errors import error_response, http_error_response
from store.errors import Conflict, NotFound, StorageUnavailable

log = logging.getLogger("parcelhook.admin")


def install(app: Flask) -> None:
    """Register the handlers on ``app`` (the admin factory; a test app serving one blueprint)."""

    @app.errorhandler(Invalid)
    def _invalid(exc: Invalid) -> Response:
        return error_response(422, "invalid", str(exc), fields=exc.fields)

    @app.errorhandler(NotFound)
    def _missing(exc: NotFound) -> Response:
        return error_response(404, "not_found", str(exc))

    @app.errorhandler(Conflict)
    def _conflict(exc: Conflict) -> Response:
        return error_response(409, "conflict", str(exc))

    @app.errorhandler(StorageUnavailable)
    def _unavailable(exc: StorageUnavailable) -> Response:
        return error_response(503, "unavailable", "database unreachable; retry")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        return http_error_response(exc)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error in admin %s %s", request.method, request.path)
        return error_response(500, "internal_error", f"{type(exc).__name__}; see the admin log")
