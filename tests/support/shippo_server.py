"""A local Shippo-compatible REST server for tests (wire-level, real HTTP, stdlib ``http.server``).

Implements what parcelhook calls, the way Shippo answers it:

- ``GET /tracks/<carrier>/<tracking_number>``: the Track set with :meth:`ShippoServer.set_track`
  (404 ``{"detail": "Not found."}`` otherwise);
- ``GET /webhooks`` (``{"next", "previous", "count", "results"}``), ``POST /webhooks``
  (``{"event", "url", "is_test"}`` → 201 webhook), ``PUT /webhooks/<id>``, ``DELETE /webhooks/<id>`` (204).

Every request must carry ``Authorization: ShippoToken <token>`` with a token in ``tokens``:
anything else is 401 ``{"detail": "Invalid token."}``. Failures can be scripted:

    with ShippoServer({"shippo_test_" + "a" * 32}) as shippo:
        shippo.fail_next(429, retry_after="1")   # the next request answers 429 + Retry-After: 1
        shippo.fail_next(503, times=3)          # then three 503s
        shippo.tokens.clear()                   # every request now answers 401
"""

from __future__ import annotations

import json
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.support.local_http import LocalHTTPServer, send_json


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    authorization: str | None
    body: Any
    status: int


@dataclass
class _Failure:
    status: int
    retry_after: str | None


@dataclass
class ShippoServer(LocalHTTPServer):
    METHODS = frozenset({"GET", "POST", "PUT", "DELETE"})
    THREAD_NAME = "shippo-server"

    tokens: set[str]
    requests: list[RecordedRequest] = field(default_factory=list)
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    tracks: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._failures: deque[_Failure] = deque()
        self._lock = threading.Lock()

    # -- scripting -------------------------------------------------------------------------------
    def set_track(self, track: dict[str, Any]) -> None:
        """What ``GET /tracks/<carrier>/<number>`` answers for the Track's carrier and number."""
        with self._lock:
            self.tracks[(str(track["carrier"]), str(track["tracking_number"]))] = track

    def fail_next(self, status: int, *, times: int = 1, retry_after: str | None = None) -> None:
        with self._lock:
            self._failures.extend(_Failure(status, retry_after) for _ in range(times))

    def add_webhook(self, event: str, url: str, *, is_test: bool = True) -> str:
        """A registration made elsewhere (by hand in Shippo's portal, an older parcelhook)."""
        with self._lock:
            return str(self._create({"event": event, "url": url, "is_test": is_test})["object_id"])

    def calls(self, method: str | None = None, prefix: str = "") -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and r.path.startswith(prefix)
            ]

    # -- request handling ------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        split = urlsplit(h.path)
        parts = [unquote(p) for p in split.path.strip("/").split("/")]
        auth = h.headers.get("Authorization")
        status, payload, headers = self._answer(h.command, parts, auth, body)
        with self._lock:
            self.requests.append(RecordedRequest(h.command, split.path, auth, body, status))
        send_json(h, status, payload, headers)

    def _answer(
        self, method: str, parts: list[str], auth: str | None, body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            authorized = any(
                auth is not None and secrets.compare_digest(auth, f"ShippoToken {t}") for t in self.tokens
            )
            if not authorized:
                return 401, {"detail": "Invalid token."}, {}
            failure = self._failures.popleft() if self._failures else None
            if failure is not None:
                headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
                return failure.status, {"detail": f"scripted failure {failure.status}"}, headers
            if method == "GET" and len(parts) == 3 and parts[0] == "tracks":
                track = self.tracks.get((parts[1], parts[2]))
                return (200, track, {}) if track is not None else (404, {"detail": "Not found."}, {})
            if parts == ["webhooks"] and method == "GET":
                results = list(self.webhooks.values())
                return 200, {"next": None, "previous": None, "count": len(results), "results": results}, {}
            if parts == ["webhooks"] and method == "POST":
                problem = _webhook_problem(body)
                return (400, {"detail": problem}, {}) if problem else (201, self._create(body), {})
            if len(parts) == 2 and parts[0] == "webhooks" and method in ("PUT", "DELETE"):
                hook = self.webhooks.get(parts[1])
                if hook is None:
                    return 404, {"detail": "Not found."}, {}
                if method == "DELETE":
                    del self.webhooks[parts[1]]
                    return 204, None, {}
                problem = _webhook_problem(body)
                if problem:
                    return 400, {"detail": problem}, {}
                hook.update(
                    event=body["event"],
                    url=body["url"],
                    is_test=bool(body.get("is_test")),
                    object_updated=_now(),
                )
                return 200, hook, {}
            return 404, {"detail": "Not found."}, {}

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        object_id = secrets.token_hex(16)
        hook = {
            "event": body["event"],
            "url": body["url"],
            "active": True,
            "is_test": bool(body.get("is_test")),
            "object_created": _now(),
            "object_id": object_id,
            "object_updated": _now(),
            "object_owner": "owner@example.com",
        }
        self.webhooks[object_id] = hook
        return hook


def _webhook_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "body must be a JSON object"
    for key in ("event", "url"):
        if not isinstance(body.get(key), str) or not body[key]:
            return f"{key}: This field is required."
    return None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
