"""The sandboxed Jinja environment merchant templates run in.

Merchant templates are untrusted code (CONTRACT §8, DESIGN "easy to get wrong"). On top of
:class:`jinja2.sandbox.ImmutableSandboxedEnvironment` (no ``__class__``/``_private`` access, no
mutation of lists/dicts, no ``str.format`` escapes) this adds:

* ``StrictUndefined``: a misspelt name is an error, never a blank.
* A **render budget** without threads or signals: a deadline checked on every sandboxed attribute
  access, item access, call, filter/test call and *loop iteration* (every ``{% for %}`` iterable is
  wrapped at parse time), so ``{% for i in range(99999) %}{% for j in range(99999) %}`` stops at
  the deadline instead of running for hours.
* **Size caps**: ``*`` and ``**`` are intercepted (so ``'x' * 10**9`` and ``9**9**9`` never
  run, not even through constant folding), integer arguments above :data:`MAX_INT_ARG` to calls,
  filters and tests are refused (``'x'.ljust(10**9)``, ``|center(10**9)``, ``|batch(10**9)``),
  and rendered output is cut off at :data:`MAX_OUTPUT_CHARS` by the renderer.
* A small global namespace: ``range`` (Jinja's capped ``safe_range``), ``dict``, ``namespace``, ``cycler``, ``joiner`` (no
  ``lipsum``).
* A loader that only serves shared partials (file names starting with ``_``, e.g.
  ``email/en/_layout.html``) so merchant templates may ``{% extends %}`` the default layout but
  cannot read anything else.
"""

from __future__ import annotations

import contextvars
import functools
import operator
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound, nodes
from jinja2.environment import Environment
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

MAX_SOURCE_CHARS = 20 * 1024
"""Template sources longer than this are rejected at validation."""

MAX_INT_BITS = 4096  # no template needs a number wider than this
MAX_OUTPUT_CHARS = 100 * 1024
"""Rendered output longer than this is an error."""

MAX_INT_ARG = 100_000
"""Largest integer a template may pass to a call, filter or test (same as Jinja's MAX_RANGE)."""

RENDER_TIMEOUT_S = 2.0
"""Default wall-clock budget for rendering one template part."""

_DROPPED_GLOBALS = ("lipsum",)


class RenderTimeout(Exception):
    """The template used more than its render budget."""


_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("parcelhook_render_deadline", default=None)


def check_deadline() -> None:
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline:
        raise RenderTimeout("template took too long to render")


class render_budget:  # noqa: N801 - used like a function: ``with render_budget(2.0):``
    """Context manager setting the render deadline for the current context."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._token: contextvars.Token[float | None] | None = None

    def __enter__(self) -> None:
        self._token = _deadline.set(time.monotonic() + self.seconds)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _deadline.reset(self._token)


def _check_ints(values: Iterable[Any]) -> None:
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT_ARG:
            raise SecurityError(f"numeric argument {value} is larger than the allowed {MAX_INT_ARG}")


def _guard_filter(fn: Callable[..., Any]) -> Callable[..., Any]:
    # pass_context / pass_environment / pass_eval_context filters get one extra leading argument;
    # the value being filtered (which may legitimately be a big number) is never checked.
    skip = 2 if getattr(fn, "jinja_pass_arg", None) is not None else 1

    @functools.wraps(fn)  # keeps ``jinja_pass_arg``
    def guarded(*args: Any, **kwargs: Any) -> Any:
        check_deadline()
        _check_ints(args[skip:])
        _check_ints(kwargs.values())
        return fn(*args, **kwargs)

    return guarded


class _PartialsLoader(FileSystemLoader):
    """Serves only shared partials/layouts: files whose name starts with ``_``."""

    def get_source(self, environment: Environment, template: str) -> tuple[str, str | None, Callable[[], bool] | None]:
        if not template.rsplit("/", 1)[-1].startswith("_"):
            raise TemplateNotFound(template)
        return super().get_source(environment, template)

    def list_templates(self) -> list[str]:
        return [t for t in super().list_templates() if t.rsplit("/", 1)[-1].startswith("_")]


class GuardedEnvironment(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment + StrictUndefined + render budget + size caps."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, *, templates_dir: Path | None, autoescape: bool) -> None:
        super().__init__(
            loader=_PartialsLoader(str(templates_dir)) if templates_dir is not None else None,
            autoescape=autoescape,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            auto_reload=False,
        )
        for name in _DROPPED_GLOBALS:
            self.globals.pop(name, None)
        self.filters = {name: _guard_filter(fn) for name, fn in self.filters.items()}
        self.tests = {name: _guard_filter(fn) for name, fn in self.tests.items()}

    # -- budget hooks (every sandboxed access goes through these) -------------------------------
    def getattr(self, obj: Any, attribute: str) -> Any:
        check_deadline()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        check_deadline()
        return super().getitem(obj, argument)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        check_deadline()
        _check_ints(args)
        _check_ints(kwargs.values())
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        check_deadline()
        if operator_ == "**":
            if isinstance(right, int | float) and abs(right) > 64:
                raise SecurityError("exponent too large")
            if isinstance(left, int) and isinstance(right, int) and right > 0 \
                    and left.bit_length() * right > MAX_INT_BITS:
                raise SecurityError("number too large")  # (2**64)**64**… would build it in one step
            return operator.pow(left, right)
        # operator_ == "*": repetition of a sequence must stay within the output cap
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(times, int):
                if len(seq) * max(times, 0) > MAX_OUTPUT_CHARS:
                    raise SecurityError("sequence repetition too large")
        if isinstance(left, int) and isinstance(right, int) \
                and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SecurityError("number too large")
        return operator.mul(left, right)

    def guard_iter(self, iterable: Any) -> Iterator[Any]:
        """Wraps every ``{% for %}`` iterable: checks the deadline before each item."""
        for item in iterable:
            check_deadline()
            yield item

    # -- parse-time rewrite: ``for x in seq`` → ``for x in environment.guard_iter(seq)`` --------
    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(
                nodes.EnvironmentAttribute("guard_iter", lineno=loop.lineno),
                [loop.iter],
                [],
                None,
                None,
                lineno=loop.lineno,
            )
        return tree
