"""A deadline for a request body, so a client that stops sending mid-body cannot hold its
connection open for ever.

gunicorn's gevent worker bounds the request line and headers and idle keep-alive
connections (``keepalive``), but not the body: the application reads it, and a client that
declares ``Content-Length: 1000`` and sends ten bytes keeps its greenlet until it hangs up.
``BodyDeadline`` gives the whole body ``seconds`` from the moment the request reaches the
application; a body not in by then is answered ``408 Request Timeout``.

Interrupting a read needs a cooperative socket (gevent's worker monkey-patches ``socket``).
Anywhere else (the Flask test client, a sync worker) the input is passed through unchanged.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from werkzeug.exceptions import RequestTimeout

BODY_TIMEOUT_S = 10.0

T = TypeVar("T")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _InputStream(Protocol):
    """The reading half of PEP 3333's ``wsgi.input``."""

    def read(self, size: int | None = ..., /) -> bytes: ...

    def readline(self, size: int | None = ..., /) -> bytes: ...

    def readlines(self, hint: int | None = ..., /) -> list[bytes]: ...


class BodyDeadline:
    """WSGI middleware: ``wsgi.input`` reads fail with ``RequestTimeout`` past the deadline."""

    def __init__(self, app: WSGIApp, seconds: float = BODY_TIMEOUT_S) -> None:
        self.app = app
        self.seconds = seconds

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if _cooperative():
            environ["wsgi.input"] = _DeadlineInput(environ["wsgi.input"], self.seconds)
        return self.app(environ, start_response)


def _cooperative() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("socket"))


class _DeadlineInput:
    def __init__(self, stream: _InputStream, seconds: float) -> None:
        self._stream = stream
        self._seconds = seconds
        self._deadline = time.monotonic() + seconds

    def _within_deadline(self, read: Callable[[int | None], T], arg: int | None) -> T:
        import gevent

        expired = RequestTimeout(f"the request body did not arrive within {self._seconds:g} s")
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise expired
        with gevent.Timeout(remaining, expired):
            return read(arg)

    def read(self, size: int | None = -1) -> bytes:
        return self._within_deadline(self._stream.read, size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._within_deadline(self._stream.readline, size)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return self._within_deadline(self._stream.readlines, hint)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line
