"""The sandboxed Jinja environment merchant templates run in.

Merchant templates are untrusted code (docs/api.md, Templates). On top of
:class:`jinja2.sandbox.ImmutableSandboxedEnvironment` (no ``__class__``/``_private`` access, no
mutation of lists/dicts, no ``str.format`` escapes) this adds:

* ``StrictUndefined``: a misspelt name is an error, never a blank.
* A **render budget** without threads or signals (:class:`render_budget`): a deadline checked on
  every sandboxed attribute access, item access, call, filter/test call, output and *loop
  iteration* (every ``{% for %}`` iterable, and every recursive ``loop(...)``, is wrapped), so
  ``{% for i in range(99999) %}{% for j in range(99999) %}`` stops at the deadline instead of
  running for hours; and at most :data:`MAX_WORK_CHARS` characters of text built by all
  operations of one render together (kept or thrown away).
* **Size caps on every operation that builds text or lists**, checked *before* the result is built
  from an estimate of its size (:mod:`notifiers.sizes`) and again on the real result: ``*``,
  ``+``, ``%`` and ``**`` are intercepted, ``~`` is rewritten at parse time into a guarded join,
  every filter is wrapped (``join``, ``list`` and ``sum`` are replaced by versions that
  materialize their iterable under a cap first), sandboxed calls estimate ``str``/``bytes`` methods
  (``center``, ``ljust``, ``zfill``, ``expandtabs``, ``replace``, ``translate``, ``join``) and
  ``str.format`` checks each field's width/precision, every ``{{ … }}`` is measured before it is
  turned into text, and every output buffer (``{% set %}`` blocks, macros, ``caller()``,
  ``{% filter %}``, ``self.block()``) stops at :data:`MAX_OUTPUT_CHARS` while it fills. No single
  string may exceed :data:`MAX_OUTPUT_CHARS` and no list :data:`MAX_ITEMS`; an operation over a
  cap raises :class:`TemplateTooLarge` and nothing big is ever built. Integer arguments above
  :data:`MAX_INT_ARG` to calls, filters and tests are refused, as are numbers wider than
  :data:`MAX_INT_BITS`. Constant folding is off (``optimized=False`` and a context-taking
  ``finalize``), so nothing runs while a template is compiled.
* A small global namespace: ``range`` (Jinja's capped ``safe_range``), ``dict``, ``namespace``, ``cycler``, ``joiner`` (no
  ``lipsum``).
* A loader that only serves shared partials (file names starting with ``_``, e.g.
  ``email/en/_layout.html``) so merchant templates may ``{% extends %}`` the default layout but
  cannot read anything else.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import operator
import time
import types
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    nodes,
    pass_environment,
    pass_eval_context,
)
from jinja2.compiler import CodeGenerator, Frame
from jinja2.environment import Environment
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter, sync_do_join
from jinja2.nodes import EvalContext
from jinja2.runtime import LoopContext, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from .sizes import FILTER_SIZES, METHOD_SIZES, format_field_size, printf_size, text_size, total_text_size

MAX_SOURCE_CHARS = 20 * 1024
"""Template sources longer than this are rejected at validation."""

MAX_INT_BITS = 4096  # no template needs a number wider than this
MAX_OUTPUT_CHARS = 100 * 1024
"""Rendered output longer than this is an error; so is any single string a template builds."""

MAX_ITEMS = 100_000
"""Longest list a template may build (same as Jinja's MAX_RANGE)."""

MAX_WORK_CHARS = 16 * MAX_OUTPUT_CHARS
"""Text (and list items) all operations of one render may build together, kept or not."""

MAX_INT_ARG = 100_000
"""Largest integer a template may pass to a call, filter or test (same as Jinja's MAX_RANGE)."""

RENDER_TIMEOUT_S = 2.0
"""Default wall-clock budget for rendering one template part."""

_DROPPED_GLOBALS = ("lipsum",)


class RenderTimeout(Exception):
    """The template used more than its render budget."""


class TemplateTooLarge(SecurityError):
    """An operation would build more text (or a longer list) than a template may; refused before it runs."""


@dataclass
class _Budget:
    deadline: float
    work_left: int


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "parcelhook_render_budget", default=None
)


_current_budget = _budget.get
_monotonic = time.monotonic


def check_deadline() -> None:
    budget = _current_budget()
    if budget is not None and _monotonic() > budget.deadline:
        raise RenderTimeout("template took too long to render")


class render_budget:
    """Context manager setting the render budget (deadline, text built) for the current context."""

    def __init__(self, seconds: float, *, work_chars: int = MAX_WORK_CHARS) -> None:
        self.seconds = seconds
        self.work_chars = work_chars
        self._token: contextvars.Token[_Budget | None] | None = None

    def __enter__(self) -> None:
        self._token = _budget.set(_Budget(time.monotonic() + self.seconds, self.work_chars))

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _budget.reset(self._token)


# -- size accounting ----------------------------------------------------------------------------------
def _too_large(what: str) -> TemplateTooLarge:
    return TemplateTooLarge(f"{what} would produce more than {MAX_OUTPUT_CHARS // 1024} KB of text")


def _reserve(what: str, size: int, *, items: bool = False) -> None:
    """Refuse an operation whose estimated result is over a cap, before it runs."""
    check_deadline()
    if items:
        if size > MAX_ITEMS:
            raise TemplateTooLarge(f"{what} would build a list of more than {MAX_ITEMS:,} items")
    elif size > MAX_OUTPUT_CHARS:
        raise _too_large(what)
    budget = _budget.get()
    if budget is not None and size > budget.work_left:
        raise TemplateTooLarge(
            f"{what} would go over the {MAX_WORK_CHARS // 1024} KB of text a template may build in one render"
        )


def _charge(size: int) -> None:
    budget = _budget.get()
    if budget is not None:
        budget.work_left -= size
        if budget.work_left < 0:
            raise TemplateTooLarge(
                f"the template builds more than {MAX_WORK_CHARS // 1024} KB of text in one render"
            )


def _produced(what: str, result: Any) -> Any:
    """Measure what an operation really built (after its estimate let it run) and charge it."""
    if isinstance(result, str | bytes | bytearray):
        if len(result) > MAX_OUTPUT_CHARS:
            raise _too_large(what)
        _charge(len(result))
    elif isinstance(result, list | tuple | dict | set | frozenset):
        if len(result) > MAX_ITEMS:
            raise TemplateTooLarge(f"{what} would build a list of more than {MAX_ITEMS:,} items")
        _charge(len(result))
    return result


def _materialize(what: str, iterable: Any) -> list[Any] | tuple[Any, ...]:
    """The items of an iterable (a generator from ``|map`` included), at most :data:`MAX_ITEMS`."""
    if isinstance(iterable, list | tuple):
        _reserve(what, len(iterable), items=True)
        return iterable
    items: list[Any] = []
    for item in iterable:
        if len(items) % 1024 == 0:
            _reserve(what, len(items) + 1, items=True)
        items.append(item)
    _reserve(what, len(items), items=True)
    return items


def _joinable(what: str, iterable: Any, separator: int) -> list[Any] | tuple[Any, ...]:
    """The items about to be joined with a ``separator``-character separator, refused as soon as
    the joined text would pass the cap: a generator is not run to its end before it is measured."""
    if isinstance(iterable, list | tuple):
        _reserve(what, len(iterable), items=True)
        _reserve(what, total_text_size(iterable, MAX_OUTPUT_CHARS, separator=separator))
        return iterable
    items: list[Any] = []
    total = -separator
    for item in iterable:
        if len(items) % 1024 == 0:
            _reserve(what, len(items) + 1, items=True)
        items.append(item)
        total += text_size(item, MAX_OUTPUT_CHARS) + separator
        if total > MAX_OUTPUT_CHARS:
            break
    _reserve(what, len(items), items=True)
    _reserve(what, max(total, 0))
    return items


def _check_ints(values: Iterable[Any]) -> None:
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT_ARG:
            raise SecurityError(f"numeric argument {value} is larger than the allowed {MAX_INT_ARG}")


# -- filters -------------------------------------------------------------------------------------------
@pass_eval_context
def _join(
    eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: str | int | None = None
) -> str:
    separator = text_size(d, MAX_OUTPUT_CHARS)
    if attribute is None:
        return sync_do_join(eval_ctx, _joinable("join", value, separator), d)
    getter = make_attrgetter(eval_ctx.environment, attribute)
    items = [getter(item) for item in _materialize("join", value)]
    _reserve("join", total_text_size(items, MAX_OUTPUT_CHARS, separator=separator))
    return sync_do_join(eval_ctx, items, d)


def _list(value: Iterable[Any]) -> list[Any]:
    return list(_materialize("list", value))


@pass_environment
def _sum(
    environment: Environment, iterable: Iterable[Any], attribute: str | int | None = None, start: Any = 0
) -> Any:
    items = _materialize("sum", iterable)
    if attribute is not None:
        getter = make_attrgetter(environment, attribute)
        items = [getter(item) for item in items]
    if isinstance(start, list | tuple):  # concatenation: linear, and capped, instead of sum()'s quadratic
        kind = list if isinstance(start, list) else tuple
        for item in items:
            if not isinstance(item, kind):
                raise TypeError(
                    f"can only concatenate {kind.__name__} (not {type(item).__name__!r}) to {kind.__name__}"
                )
        _reserve("sum", len(start) + sum(len(item) for item in items), items=True)
        return kind(chain(start, *items))
    if any(isinstance(item, list | tuple) for item in items):
        raise TypeError("sum() of lists needs a list start value: |sum(start=[])")
    return sum(items, start)


_REPLACED_FILTERS: dict[str, Callable[..., Any]] = {"join": _join, "list": _list, "sum": _sum}


def _guard_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = _REPLACED_FILTERS.get(name, fn)
    # pass_context / pass_environment / pass_eval_context filters get one extra leading argument;
    # the value being filtered (which may legitimately be a big number) is never checked.
    skip = 2 if getattr(fn, "jinja_pass_arg", None) is not None else 1
    estimate = FILTER_SIZES.get(name)
    signature = inspect.signature(fn) if estimate is not None else None
    what = f"|{name}"

    @functools.wraps(fn)  # keeps ``jinja_pass_arg``
    def guarded(*args: Any, **kwargs: Any) -> Any:
        check_deadline()
        _check_ints(args[skip:])
        _check_ints(kwargs.values())
        if estimate is not None and signature is not None:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            for _ in range(skip - 1):
                arguments.pop(next(iter(arguments)))
            _reserve(what, estimate(arguments, MAX_OUTPUT_CHARS))
        return _produced(what, fn(*args, **kwargs))

    return guarded


def _guard_test(fn: Callable[..., Any]) -> Callable[..., Any]:
    skip = 2 if getattr(fn, "jinja_pass_arg", None) is not None else 1

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        check_deadline()
        _check_ints(args[skip:])
        _check_ints(kwargs.values())
        return fn(*args, **kwargs)

    return guarded


@pass_eval_context
def _finalize(eval_ctx: EvalContext, value: Any) -> Any:
    """Every ``{{ … }}`` passes here before it is turned into text: measure it first."""
    size = text_size(value, MAX_OUTPUT_CHARS)
    _reserve("an expression", size)
    _charge(size)
    return value


# -- str.format ------------------------------------------------------------------------------------------
class _SizedFormatting:
    """Mixed into Jinja's sandboxed formatters: each field is estimated before it is formatted."""

    _used = 0

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        self._used = len(format_string)
        return super().vformat(format_string, args, kwargs)  # type: ignore[misc, no-any-return]

    def format_field(self, value: Any, format_spec: str) -> Any:
        self._used += format_field_size(value, format_spec, MAX_OUTPUT_CHARS)
        _reserve("format", self._used)
        return super().format_field(value, format_spec)  # type: ignore[misc]


class _GuardedFormatter(_SizedFormatting, SandboxedFormatter):
    pass


class _GuardedEscapeFormatter(_SizedFormatting, SandboxedEscapeFormatter):
    pass


# -- output buffers --------------------------------------------------------------------------------------
class _OutputBuffer(list):  # type: ignore[type-arg]
    """What a ``{% set %}`` block, macro, ``caller()`` or ``{% filter %}`` body writes into: capped while it fills."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def append(self, item: Any) -> None:
        if item:
            self.size += len(item)
            if self.size > MAX_OUTPUT_CHARS:
                raise _too_large("a block")
            check_deadline()
            super().append(item)

    def extend(self, items: Iterable[Any]) -> None:
        for item in items:
            self.append(item)


class _GuardedCodeGenerator(CodeGenerator):
    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.output_buffer()")


class _GuardedTemplate(Template):
    def render(self, *args: Any, **kwargs: Any) -> str:
        if _budget.get() is not None:
            return super().render(*args, **kwargs)
        with render_budget(RENDER_TIMEOUT_S):
            return super().render(*args, **kwargs)


# -- parse-time rewrites ----------------------------------------------------------------------------------
class _Rewrite(NodeTransformer):
    """``for x in seq`` → ``for x in environment.guard_iter(seq)``; ``a ~ b`` → ``environment.guard_concat(context, a, b)``."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(
            nodes.EnvironmentAttribute("guard_iter", lineno=node.lineno),
            [node.iter],
            [],
            None,
            None,
            lineno=node.lineno,
        )
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(
            nodes.EnvironmentAttribute("guard_concat", lineno=node.lineno),
            [nodes.ContextReference(lineno=node.lineno), *node.nodes],
            [],
            None,
            None,
            lineno=node.lineno,
        )


class _PartialsLoader(FileSystemLoader):
    """Serves only shared partials/layouts: files whose name starts with ``_``."""

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        if not template.rsplit("/", 1)[-1].startswith("_"):
            raise TemplateNotFound(template)
        return super().get_source(environment, template)

    def list_templates(self) -> list[str]:
        return [t for t in super().list_templates() if t.rsplit("/", 1)[-1].startswith("_")]


#: Every attribute a plain dict has (its class's and ``object``'s): any other name read from a dict
#: is an item or undefined.
_DICT_ATTRIBUTES = frozenset(dir(dict))


class GuardedEnvironment(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment + StrictUndefined + render budget + size caps."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _GuardedCodeGenerator
    template_class = _GuardedTemplate

    def __init__(self, *, templates_dir: Path | None, autoescape: bool) -> None:
        super().__init__(
            loader=_PartialsLoader(str(templates_dir)) if templates_dir is not None else None,
            autoescape=autoescape,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            auto_reload=False,
            finalize=_finalize,
            optimized=False,  # no constant folding: no template code runs at compile time
        )
        for name in _DROPPED_GLOBALS:
            self.globals.pop(name, None)
        self.filters = {name: _guard_filter(name, fn) for name, fn in self.filters.items()}
        self.tests = {name: _guard_test(fn) for name, fn in self.tests.items()}  # type: ignore[arg-type]

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A template's globals as one plain dict: the same names and values as Jinja's
        ``ChainMap(d, self.globals)``, but copied in one step by every render's ``new_context``
        (a ChainMap is iterated key by key in Python). This environment's globals are fixed in
        ``__init__``, before any template is loaded, as Jinja asks."""
        return {**self.globals, **(d or {})}

    def add_filter(self, name: str, fn: Callable[..., Any]) -> None:
        """Register a project filter behind the same guards as Jinja's own."""
        self.filters[name] = _guard_filter(name, fn)

    # -- budget hooks (every sandboxed access goes through these) -------------------------------
    def getattr(self, obj: Any, attribute: str) -> Any:
        check_deadline()
        if type(obj) is dict and type(attribute) is str and attribute not in _DICT_ATTRIBUTES:
            # what the sandbox's getattr does for a plain dict (every context object), without
            # its AttributeError: a dict has no attribute but its class's, so it is an item or undefined
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        check_deadline()
        result = super().getitem(obj, argument)
        return _produced("a slice", result) if isinstance(argument, slice) else result

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        check_deadline()
        if getattr(__obj, "__func__", None) in _INTERNAL:
            return super().call(__context, __obj, *args, **kwargs)
        _check_ints(args)
        _check_ints(kwargs.values())
        name = getattr(__obj, "__name__", "call")
        owner = getattr(__obj, "__self__", None)
        if isinstance(__obj, LoopContext) and args:
            args = (__self.guard_iter(args[0]), *args[1:])
        elif isinstance(owner, str | bytes):
            if name == "join" and len(args) == 1 and not kwargs:
                args = (_joinable("join", args[0], len(owner)),)
            elif name in METHOD_SIZES:
                _reserve(name, METHOD_SIZES[name](owner, args, kwargs, MAX_OUTPUT_CHARS))
        return _produced(name, super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        check_deadline()
        if operator_ == "**":
            if isinstance(right, int | float) and abs(right) > 64:
                raise SecurityError("exponent too large")
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and right > 0
                and left.bit_length() * right > MAX_INT_BITS
            ):
                raise SecurityError("number too large")  # (2**64)**64**… would build it in one step
            return operator.pow(left, right)
        if operator_ == "%":
            if isinstance(left, str | bytes):
                _reserve("%", printf_size(left, right, MAX_OUTPUT_CHARS))
            return _produced("%", operator.mod(left, right))
        if operator_ == "+":
            for kind in (str, bytes, list, tuple):
                if isinstance(left, kind) and isinstance(right, kind):
                    _reserve("+", len(left) + len(right), items=kind in (list, tuple))
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and max(left.bit_length(), right.bit_length()) >= MAX_INT_BITS
            ):
                raise SecurityError("number too large")
            return _produced("+", operator.add(left, right))
        # operator_ == "*": repetition of a sequence must stay within the caps
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | bytes | list | tuple) and isinstance(times, int):
                _reserve("*", len(seq) * max(times, 0), items=isinstance(seq, list | tuple))
        if (
            isinstance(left, int)
            and isinstance(right, int)
            and left.bit_length() + right.bit_length() > MAX_INT_BITS
        ):
            raise SecurityError("number too large")
        return _produced("*", operator.mul(left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Jinja's own ``str.format`` sandboxing, with formatters that estimate every field first."""
        if not isinstance(value, types.MethodType | types.BuiltinMethodType) or value.__name__ not in (
            "format",
            "format_map",
        ):
            return None
        f_self: Any = value.__self__
        if not isinstance(f_self, str):
            return None
        str_type: type[str] = type(f_self)
        is_format_map = value.__name__ == "format_map"
        formatter: SandboxedFormatter = (
            _GuardedEscapeFormatter(self, escape=f_self.escape)
            if isinstance(f_self, Markup)
            else _GuardedFormatter(self)
        )

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs, args = args[0], ()
            return str_type(formatter.vformat(f_self, args, kwargs))

        return functools.update_wrapper(wrapper, value)

    # -- called by rewritten template code ---------------------------------------------------------
    def guard_iter(self, iterable: Any) -> Iterator[Any]:
        """Wraps every ``{% for %}`` iterable (and recursive ``loop(…)`` calls): checks the deadline before each item."""
        for item in iterable:
            check_deadline()
            yield item

    def guard_concat(self, context: Any, *parts: Any) -> str:
        """``a ~ b ~ c``: measured before it is joined (Jinja's own joins do the rest)."""
        _reserve("~", total_text_size(parts, MAX_OUTPUT_CHARS))
        join = markup_join if context.eval_ctx.autoescape else str_join
        return _produced("~", join(parts))  # type: ignore[no-any-return]

    def output_buffer(self) -> _OutputBuffer:
        return _OutputBuffer()

    def concat(self, parts: Iterable[str]) -> str:
        """Replaces ``"".join`` for every buffer, block and whole-template render: stops at the cap."""
        kept: list[str] = []
        size = 0
        for part in parts:
            if part:
                size += len(part)
                if size > MAX_OUTPUT_CHARS:
                    raise _too_large("a block")
                kept.append(part)
        _charge(size)
        return "".join(kept)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        _Rewrite().visit(tree)
        return tree


_INTERNAL = frozenset({GuardedEnvironment.guard_iter, GuardedEnvironment.guard_concat})
