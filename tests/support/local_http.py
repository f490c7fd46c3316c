"""The small stdlib HTTP server the provider stand-ins share (``shippo_server``, ``twilio_server``).

A subclass lists the methods it answers in ``METHODS`` and implements ``_handle``; this base
serves it on ``127.0.0.1`` (a free port) from a daemon thread, as a context manager. A method
outside ``METHODS`` gets ``http.server``'s own 501, as a handler without that ``do_*`` would."""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


class LocalHTTPServer(ABC):
    METHODS: ClassVar[frozenset[str]] = frozenset({"GET", "POST"})
    THREAD_NAME: ClassVar[str] = "local-http-server"

    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @abstractmethod
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        """Answer one request of a method in ``METHODS``."""

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        assert isinstance(host, str), "an AF_INET server's address is text"
        return f"http://{host}:{port}"

    def start(self) -> Self:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _dispatch(self) -> None:
                if self.command in server.METHODS:
                    server._handle(self)
                else:
                    self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({self.command!r})")

            do_GET = do_POST = do_PUT = do_DELETE = _dispatch

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=self.THREAD_NAME,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def send_json(
    h: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str] | None = None
) -> None:
    """``payload`` as a JSON body (``None``: an empty body without a Content-Type), plus ``headers``."""
    data = b"" if payload is None else json.dumps(payload).encode()
    h.send_response(status)
    if payload is not None:
        h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    for key, value in (headers or {}).items():
        h.send_header(key, value)
    h.end_headers()
    h.wfile.write(data)
